"""containerd 1.6 (runc v2 shim) with runp as the shim's runtime, every scenario also with runc.

The shim runs the binary named by its BinaryName option, which `ctr run --runc-binary` sets,
with its state under `--runc-root` (a private directory); see conftest.py. Scenarios ctr has no
command for (update) replay the exact call the shim makes: `RUNTIME --root R --log L
--log-format json update --resources - ID` with the LinuxResources JSON on stdin.
"""
from __future__ import annotations

import json
import os
import time

import pytest

from .conftest import CTR_IMAGE, CTR_NAMESPACE, run_in_pty, wait_for

pytestmark = pytest.mark.integration


def _cgroup(cid: str, controller: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{controller}/{CTR_NAMESPACE}/{cid}/{name}") as f:
        return f.read().strip()


def _detached(ctr, cid: str, tmp_path, *args: str, cmd: tuple[str, ...] = ("sleep", "1000")) -> str:
    """`ctr run -d` with the container's output in a file; returns the file's path."""
    log = tmp_path / f"{cid}.log"
    ctr.run("-d", "--log-uri", f"file://{log}", *args, CTR_IMAGE, cid, *cmd)
    wait_for(lambda: ctr.task_status(cid) == "RUNNING", what=f"{cid} to run")
    return str(log)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_run_output_and_exit_code(ctr):
    p = ctr.run("--rm", CTR_IMAGE, "out", "sh", "-c", "echo hello; echo oops >&2; exit 5",
                check=False)
    assert p.returncode == 5, p.stderr
    assert p.stdout == "hello\n"
    assert "oops" in p.stderr


def test_shim_fd_does_not_leak(ctr):
    """The shim's fd 3 (its socket, no CLOEXEC) must not reach the container."""
    out = ctr.run("--rm", CTR_IMAGE, "fds", "sh", "-c", "ls /proc/1/fd; true").stdout
    assert out.split() == ["0", "1", "2"]


def test_missing_command_error(ctr):
    """The shim reports the last error line of the runtime's JSON log."""
    p = ctr.run("--rm", CTR_IMAGE, "missing", "no-such-command", check=False)
    assert p.returncode != 0
    assert "no-such-command" in p.stderr
    assert "not found" in p.stderr or "no such file" in p.stderr


def test_detached_exec_kill_delete(ctr, tmp_path):
    _detached(ctr, "det", tmp_path)
    # ctr can lose the output of an exec that exits at once (seen with runc too, 1 in 40 under
    # load): the process lingers a moment
    p = ctr("tasks", "exec", "--exec-id", "e1", "det", "sh", "-c",
            "echo from exec; sleep 0.3; exit 4", check=False)
    assert (p.returncode, p.stdout) == (4, "from exec\n"), p.stderr
    p = ctr("tasks", "exec", "--exec-id", "e2", "--user", "1000", "det", "id")
    assert p.stdout.startswith("uid=1000(user) gid=1000(user)")
    code, out = run_in_pty(ctr.d.argv("tasks", "exec", "-t", "--exec-id", "e3", "det",
                                      "sh", "-c", "tty; exit 6"), dict(os.environ), [])
    assert code == 6, out
    assert "/dev/pts/" in out
    # sleep as pid 1 ignores SIGTERM; SIGKILL ends it
    ctr("tasks", "kill", "--signal", "TERM", "det")
    time.sleep(0.5)
    assert ctr.task_status("det") == "RUNNING"
    ctr("tasks", "kill", "--signal", "KILL", "det")
    wait_for(lambda: ctr.task_status("det") == "STOPPED", what="the task to stop")
    # containerd's shim: `kill --all ID 9` on the stopped container, `delete`, `delete --force`
    ctr("tasks", "kill", "--all", "--signal", "KILL", "det", check=False)
    ctr("tasks", "delete", "det")
    ctr("containers", "delete", "det")
    assert ctr("containers", "list", "--quiet").stdout.strip() == ""


def test_interactive_tty(ctr):
    argv = ctr.d.argv("run", *ctr.run_args(), "--rm", "-t", CTR_IMAGE, "tty1", "sh", "-c",
                      "tty; echo READY; read line; echo got:$line; exit 5")
    code, out = run_in_pty(argv, dict(os.environ), [("READY", b"hello\r")])
    assert code == 5, out
    assert "/dev/pts/0" in out or "/dev/console" in out
    assert "got:hello" in out


def test_pause_resume(ctr, tmp_path):
    _detached(ctr, "pz", tmp_path)
    ctr("tasks", "pause", "pz")
    assert ctr.task_status("pz") == "PAUSED"
    assert _cgroup("pz", "freezer", "freezer.state") == "FROZEN"
    ctr("tasks", "resume", "pz")
    assert ctr.task_status("pz") == "RUNNING"
    assert _cgroup("pz", "freezer", "freezer.state") == "THAWED"


def test_kill_with_signals(ctr, tmp_path):
    log = _detached(ctr, "sig", tmp_path, cmd=(
        "sh", "-c", "trap 'echo got-usr1' USR1; trap 'echo got-term; exit 3' TERM; "
                    "echo ready; while :; do sleep 0.1; done"))
    wait_for(lambda: "ready" in _read(log), what="the container to start")
    ctr("tasks", "kill", "--signal", "USR1", "sig")
    wait_for(lambda: "got-usr1" in _read(log), what="USR1 to arrive")
    assert ctr.task_status("sig") == "RUNNING"
    ctr("tasks", "kill", "--signal", "TERM", "sig")
    wait_for(lambda: ctr.task_status("sig") == "STOPPED", what="the task to stop")
    assert "got-term" in _read(log)


def test_memory_limit(ctr, tmp_path):
    _detached(ctr, "mem", tmp_path, "--memory-limit", str(64 << 20))
    assert _cgroup("mem", "memory", "memory.limit_in_bytes") == str(64 << 20)
    # ctr mounts no cgroupfs: the process names its cgroup, the one limited above
    p = ctr("tasks", "exec", "--exec-id", "m", "mem", "cat", "/proc/self/cgroup")
    assert f"memory:/{CTR_NAMESPACE}/mem" in p.stdout


def test_update_resources_from_stdin(ctr, tmp_path):
    """ctr 1.6 has no update command: the shim's own call, LinuxResources JSON on stdin."""
    _detached(ctr, "upd", tmp_path, "--memory-limit", str(64 << 20))
    res = {"memory": {"limit": 128 << 20}, "pids": {"limit": 40}, "cpu": {"shares": 512}}
    p = ctr.runtime_cmd("update", "--resources", "-", "upd", input=json.dumps(res).encode())
    assert p.returncode == 0, p.stderr
    assert p.stdout == p.stderr == ""
    assert _cgroup("upd", "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert _cgroup("upd", "pids", "pids.max") == "40"
    assert _cgroup("upd", "cpu", "cpu.shares") == "512"
    assert ctr.task_status("upd") == "RUNNING"


def test_task_ps(ctr, tmp_path):
    """`ctr tasks ps` is the shim's `ps --format json ID` (stdout and stderr in one pipe)."""
    # sh runs its last command with exec: two sleeps, no shell
    _detached(ctr, "ps", tmp_path, cmd=("sh", "-c", "sleep 1000 & sleep 1001"))
    wait_for(lambda: len(ctr("tasks", "ps", "ps").stdout.strip().splitlines()) == 3,
             what="two processes")
    pids = [int(line.split()[0]) for line in ctr("tasks", "ps", "ps").stdout.splitlines()[1:]]
    assert ctr.task_pid("ps") in pids
    p = ctr.runtime_cmd("ps", "--format", "json", "ps")
    assert p.returncode == 0 and p.stderr == ""
    assert sorted(json.loads(p.stdout)) == sorted(pids)


def test_cap_drop_all(ctr):
    from runtime.linux.capabilities import CAPS
    drops = [a for c in CAPS for a in ("--cap-drop", c)]
    out = ctr.run("--rm", *drops, CTR_IMAGE, "caps", "grep", "^Cap", "/proc/self/status").stdout
    caps = dict(line.split(":\t") for line in out.strip().splitlines())
    assert set(caps.values()) == {"0000000000000000"}, caps


def test_read_only_root(ctr):
    p = ctr.run("--rm", "--read-only", CTR_IMAGE, "ro", "sh", "-c",
                "touch /x 2>&1; echo rc=$?")
    assert "Read-only file system" in p.stdout and "rc=1" in p.stdout


def test_network_default_and_host(ctr):
    out = ctr.run("--rm", CTR_IMAGE, "netns", "ls", "/sys/class/net").stdout
    assert out.split() == ["lo"]
    out = ctr.run("--rm", "--net-host", CTR_IMAGE, "nethost", "ls", "/sys/class/net").stdout
    assert set(out.split()) == set(os.listdir("/sys/class/net"))


def test_restart_task(ctr, tmp_path):
    """A new task in the same container: create/start again under the same id."""
    _detached(ctr, "rs", tmp_path)
    pid1 = ctr.task_pid("rs")
    ctr("tasks", "kill", "--signal", "KILL", "rs")
    wait_for(lambda: ctr.task_status("rs") == "STOPPED", what="the task to stop")
    ctr("tasks", "delete", "rs")
    ctr("tasks", "start", "--detach", "rs")
    wait_for(lambda: ctr.task_status("rs") == "RUNNING", what="the task to run again")
    assert ctr.task_pid("rs") != pid1


def test_checkpoint_fails_cleanly(ctr, tmp_path):
    """No usable criu here: checkpoint fails, the task keeps running, the error says why."""
    _detached(ctr, "cp", tmp_path)
    p = ctr("tasks", "checkpoint", "cp", check=False)
    assert p.returncode != 0
    assert "criu" in p.stderr.lower(), p.stderr
    assert ctr.task_status("cp") == "RUNNING"
