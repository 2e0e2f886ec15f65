"""podman 4.3 (+ conmon) with runp as its OCI runtime, every scenario also with runc.

podman is configured only through a private containers.conf (runp under [engine.runtimes] and
in runtime_supports_json, so conmon passes --log-format=json) and a private storage.conf; see
conftest.py. Each test removes its containers; the fixture checks that neither podman, nor the
runtime, nor the cgroup tree, nor the mount table keeps anything of them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from .conftest import IMAGE, run_files, run_in_pty, wait_for

pytestmark = pytest.mark.integration


def test_runtime_is_configured(podman):
    """podman info shows the runtime's --version verbatim (its first line names it)."""
    out = podman("info", "--format", "{{.Host.OCIRuntime.Name}}|{{.Host.OCIRuntime.Version}}").stdout
    name, _, version = out.partition("|")
    assert name.strip() == podman.runtime
    assert version.startswith(f"{podman.runtime} version ")
    assert "\nspec: " in version


def test_run_output_and_exit_code(podman):
    p = podman.run("--rm", IMAGE, "sh", "-c", "echo hello; echo oops >&2; exit 3", check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout == "hello\n"
    assert "oops" in p.stderr


def test_run_error_exit_codes(podman):
    """conmon reads the runtime's JSON log; podman maps its phrases to docker's exit codes."""
    p = podman.run("--rm", IMAGE, "no-such-command", check=False)
    assert p.returncode == 127, p.stderr
    p = podman.run("--rm", IMAGE, "/etc/passwd", check=False)
    assert p.returncode == 126, p.stderr


def test_detached_exec_stop_rm(podman):
    podman.run("-d", "--name", "det", IMAGE, "sleep", "1000")
    assert podman.status("det") == "running"
    p = podman("exec", "det", "sh", "-c", "echo from exec; exit 4", check=False)
    assert (p.returncode, p.stdout) == (4, "from exec\n"), p.stderr
    # a terminal and a user: podman passes --tty --console-socket, process.user 1000
    p = podman("exec", "-t", "-u", "1000", "det", "sh", "-c", "id -u; id -g; tty")
    uid, gid, tty = p.stdout.replace("\r", "").split("\n")[:3]
    assert (uid, gid) == ("1000", "1000")
    assert tty.startswith("/dev/pts/")
    assert podman("exec", "det", "no-such-command", check=False).returncode == 127
    # sleep as pid 1 ignores SIGTERM: podman sends TERM, waits 2 s, then KILL
    t0 = time.monotonic()
    podman("stop", "-t", "2", "det")
    assert time.monotonic() - t0 >= 1.5
    assert podman.status("det") == "exited"
    assert podman.inspect("det", "{{.State.ExitCode}}") == "137"
    podman("rm", "det")
    assert podman("ps", "-aq").stdout.strip() == ""


def test_stop_with_term(podman):
    """A container that handles SIGTERM stops at once with its own exit code."""
    podman.run("-d", "--name", "term", IMAGE, "sh", "-c",
               "trap 'exit 7' TERM; while :; do sleep 0.1; done")
    t0 = time.monotonic()
    podman("stop", "-t", "20", "term")
    assert time.monotonic() - t0 < 10
    assert podman.inspect("term", "{{.State.ExitCode}}") == "7"


def test_interactive_tty(podman):
    argv = ["podman", *([] if podman.runtime == "runp" else ["--runtime", podman.runtime]),
            "run", "--rm", "-it", IMAGE, "sh", "-c",
            "tty; stty size; echo READY; read line; echo got:$line; exit 5"]
    code, out = run_in_pty(argv, podman.env.env, [("READY", b"hello\r")])
    assert code == 5, out
    assert "/dev/pts/0" in out
    assert "got:hello" in out


def test_pause_unpause(podman):
    podman.run("-d", "--name", "pz", IMAGE, "sleep", "1000")
    cid = podman.full_id("pz")
    podman("pause", "pz")
    assert podman.status("pz") == "paused"
    assert podman.cgroup_file(cid, "freezer", "freezer.state") == "FROZEN"
    podman("unpause", "pz")
    assert podman.status("pz") == "running"
    assert podman.cgroup_file(cid, "freezer", "freezer.state") == "THAWED"
    podman("rm", "-f", "-t", "0", "pz")


def test_kill_with_signals(podman):
    podman.run("-d", "--name", "sig", IMAGE, "sh", "-c",
               "trap 'echo got-usr1' USR1; trap 'echo got-term; exit 3' TERM; "
               "echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in podman("logs", "sig").stdout, what="the container to start")
    podman("kill", "--signal", "USR1", "sig")
    wait_for(lambda: "got-usr1" in podman("logs", "sig").stdout, what="USR1 to arrive")
    assert podman.status("sig") == "running"
    podman("kill", "--signal", "TERM", "sig")
    assert podman("wait", "sig").stdout.strip() == "3"
    assert "got-term" in podman("logs", "sig").stdout


def test_memory_and_pids_limits(podman):
    podman.run("-d", "--name", "lim", "--memory", "64m", "--pids-limit", "50", IMAGE,
               "sleep", "1000")
    cid = podman.full_id("lim")
    assert podman.cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert podman.cgroup_file(cid, "pids", "pids.max") == "50"
    inside = podman("exec", "lim", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "/sys/fs/cgroup/pids/pids.max").stdout.split()
    assert inside == [str(64 << 20), "50"]
    # the limit holds: five more sleeps do not fit under a pids limit of 3
    podman("rm", "-f", "-t", "0", "lim")
    p = podman.run("--rm", "--pids-limit", "3", IMAGE, "sh", "-c",
                   "for i in 1 2 3 4 5; do sleep 5 & done; wait", check=False)
    assert "fork" in p.stderr.lower() or p.returncode != 0, p


def test_cap_drop_all(podman):
    """podman sends "capabilities": {} for --cap-drop all."""
    out = podman.run("--rm", "--cap-drop", "all", IMAGE, "grep", "^Cap", "/proc/self/status").stdout
    caps = dict(line.split(":\t") for line in out.strip().splitlines())
    assert set(caps.values()) == {"0000000000000000"}, caps


def test_read_only_root(podman):
    """--read-only: the root is read-only, /tmp /run /var/tmp are tmpfs with tmpcopyup."""
    p = podman.run("--rm", "--read-only", IMAGE, "sh", "-c",
                   "touch /root/x 2>&1; touch /tmp/x /run/x /var/tmp/x && echo writable; "
                   "cat /run/marker /var/tmp/marker; grep -E ' /(tmp|run|var/tmp) ' /proc/mounts")
    assert "Read-only file system" in p.stdout
    assert "writable" in p.stdout
    assert p.stdout.count("copied up") == 2
    assert p.stdout.count(" tmpfs ") >= 3


def test_user_1000(podman):
    assert podman.run("--rm", "--user", "1000", IMAGE, "id").stdout.strip() == \
        "uid=1000(user) gid=1000(user) groups=1000(user)"
    assert podman.run("--rm", "--user", "1000:1000", IMAGE, "sh", "-c",
                      "touch /x 2>&1; echo $?").stdout.strip().endswith("1")


def test_default_devices(podman):
    """podman sends one deny-all device rule: the runtime adds and allows the defaults."""
    p = podman.run("--rm", IMAGE, "sh", "-c",
                   "echo x > /dev/null && head -c 3 /dev/zero | wc -c && "
                   "head -c 3 /dev/urandom | wc -c && ls /dev; "
                   "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda; echo rc=$?")
    assert p.stdout.split()[:2] == ["3", "3"]
    for dev in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"):
        assert dev in p.stdout.split()
    assert "Operation not permitted" in p.stderr
    assert "rc=1" in p.stdout


def test_network_none(podman):
    out = podman.run("--rm", "--network", "none", IMAGE, "ip", "-o", "link").stdout
    names = [line.split(":")[1].strip() for line in out.strip().splitlines()]
    assert names == ["lo"]
    assert "UP" in out


def test_network_host(podman):
    out = podman.run("--rm", "--network", "host", IMAGE, "ls", "/sys/class/net").stdout
    assert set(out.split()) == set(os.listdir("/sys/class/net"))


def _iptables_chains(tool: str, table: str) -> set[str]:
    p = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True)
    return {line.split()[1] for line in p.stdout.splitlines() if line.startswith("-N ")}


@pytest.fixture
def netavark_cleanup():
    """netavark leaves its iptables chains (and forwarding on): remove what it added."""
    if not shutil.which("iptables"):
        pytest.skip("no iptables: the bridge network cannot work")
    tables = [(tool, table) for tool in ("iptables", "ip6tables") if shutil.which(tool)
              for table in ("filter", "nat")]
    before = {t: _iptables_chains(*t) for t in tables}
    forward = open("/proc/sys/net/ipv4/ip_forward").read().strip()
    links = set(os.listdir("/sys/class/net"))
    yield
    for link in set(os.listdir("/sys/class/net")) - links:
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for (tool, table), chains in before.items():
        new = _iptables_chains(tool, table) - chains
        rules = subprocess.run([tool, "-t", table, "-S"], capture_output=True,
                               text=True).stdout.splitlines()
        for rule in rules:
            f = rule.split()
            if f[0] == "-A" and f[1] not in new and "-j" in f and f[f.index("-j") + 1] in new:
                subprocess.run([tool, "-t", table, "-D", *f[1:]], capture_output=True)
        for chain in new:
            subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
        for chain in new:
            subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write(forward)


def test_network_bridge(podman, netavark_cleanup):
    p = podman.run("--rm", "--network", "bridge", IMAGE, "ip", "-o", "-4", "addr", check=False)
    if p.returncode != 0 and podman.runtime == "runc":
        pytest.skip(f"the default bridge does not work here even with runc: {p.stderr[-200:]}")
    assert p.returncode == 0, p.stderr
    assert " eth0 " in p.stdout and "inet 10.88." in p.stdout


def test_update_running_container(podman):
    podman.run("-d", "--name", "upd", "--memory", "64m", IMAGE, "sleep", "1000")
    cid = podman.full_id("upd")
    podman("update", "--memory", "128m", "--cpu-shares", "512", "upd")
    assert podman.cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert podman.cgroup_file(cid, "cpu", "cpu.shares") == "512"
    assert podman.status("upd") == "running"


def test_top_and_runtime_ps(podman):
    podman.run("-d", "--name", "top", IMAGE, "sh", "-c", "sleep 1000 & sleep 1001")
    wait_for(lambda: "1001" in podman("top", "top").stdout, what="podman top")
    out = podman("top", "top", "pid", "args").stdout
    assert "sleep 1000" in out and "sleep 1001" in out
    # the runtime's own ps on podman's container (what containerd's shim calls)
    cid = podman.full_id("top")
    p = run_files([podman.runtime_bin, "ps", "--format", "json", cid])
    assert p.returncode == 0 and p.stderr == ""
    pids = json.loads(p.stdout)
    assert len(pids) == 2
    assert str(pids[0]) == podman.inspect("top", "{{.State.Pid}}")


def test_restart(podman):
    podman.run("-d", "--name", "rs", IMAGE, "sleep", "1000")
    pid1 = podman.inspect("rs", "{{.State.Pid}}")
    podman("restart", "-t", "0", "rs")
    assert podman.status("rs") == "running"
    pid2 = podman.inspect("rs", "{{.State.Pid}}")
    assert pid2 != pid1 and pid2 != "0"
    assert podman("exec", "rs", "echo", "alive").stdout == "alive\n"


def test_shared_pid_namespace_stop(podman):
    """--pid host: podman stops with `kill --all`; nothing of the container may survive."""
    podman.run("-d", "--name", "hostpid", "--pid", "host", IMAGE, "sh", "-c",
               "sleep 1001 & sleep 1002")
    cid = podman.full_id("hostpid")
    pids = wait_for(lambda: [p for p in _cgroup_pids(cid) if p], what="the processes")
    podman("stop", "-t", "1", "hostpid")
    assert podman.status("hostpid") == "exited"
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")
                and open(f"/proc/{p}/stat").read().split(") ")[1][0] != "Z"]


def _cgroup_pids(cid: str) -> list[int]:
    try:
        with open(f"/sys/fs/cgroup/pids/libpod_parent/libpod-{cid}/cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def test_exec_interactive_and_detached(podman):
    """exec -it with a working directory and environment; exec -d leaves the process running."""
    podman.run("-d", "--name", "ex", IMAGE, "sleep", "1000")
    argv = ["podman", *([] if podman.runtime == "runp" else ["--runtime", podman.runtime]),
            "exec", "-it", "-w", "/tmp", "-e", "FOO=bar", "ex", "sh", "-c",
            "pwd; echo $FOO; echo READY; read l; echo got:$l; exit 3"]
    code, out = run_in_pty(argv, podman.env.env, [("READY", b"abc\r")])
    assert code == 3, out
    assert out.replace("\r", "").split("\n")[:2] == ["/tmp", "bar"]
    assert "got:abc" in out
    podman("exec", "-d", "ex", "sleep", "999")
    wait_for(lambda: "sleep 999" in podman("top", "ex", "args").stdout, what="the exec'd process")


def test_oci_hooks_from_hooks_dir(podman, tmp_path):
    """podman turns hooks.d files into config.json hooks: the runtime runs prestart,
    createRuntime and poststart with the container state on stdin."""
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\nread state\necho \"$1 $state\" >> {log}\n")
    script.chmod(0o755)
    hooks = tmp_path / "hooks.d"
    hooks.mkdir()
    for stage in ("prestart", "createRuntime", "poststart"):
        (hooks / f"{stage}.json").write_text(json.dumps({
            "version": "1.0.0", "hook": {"path": str(script), "args": ["hook.sh", stage]},
            "when": {"always": True}, "stages": [stage]}))
    podman("--hooks-dir", str(hooks), "run", "--name", "hk", IMAGE, "true")
    cid = podman.full_id("hk")
    runs = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert [stage for stage, _ in runs] == ["prestart", "createRuntime", "poststart"]
    for _, state in runs:
        st = json.loads(state)
        assert st["id"] == cid and st["pid"] > 0
