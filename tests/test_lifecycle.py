"""The create/start/state/kill/delete/run lifecycle, driven through the CLI as callers do."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import new_id, proc_alive


def wait_for(pred, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def with_host_dir(bundle, host: Path, dest: str = "/host") -> None:
    bundle.config["mounts"].append({"destination": dest, "type": "bind", "source": str(host),
                                    "options": ["rbind", "rw"]})


def test_create_start_split(runp, bundle, cid, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    with_host_dir(bundle, host)
    bundle.set_args("sh", "-c", "echo started > /host/mark; sleep 100")
    runp("create", "--bundle", str(bundle.path), cid)
    st = runp.state(cid)
    assert st["status"] == "created"
    assert proc_alive(st["pid"])
    time.sleep(0.3)
    assert not (host / "mark").exists(), "the process ran before start"
    runp("start", cid)
    wait_for(lambda: (host / "mark").exists(), what="container process to run")
    assert runp.state(cid)["status"] == "running"
    runp("kill", cid, "KILL")
    wait_for(lambda: runp.state(cid)["status"] == "stopped", what="stopped")
    assert runp.state(cid)["pid"] == 0
    runp("delete", cid)
    assert cid not in runp.ids()


def test_state_fields(runp, bundle, cid):
    bundle.config["annotations"] = {"org.example.key": "value"}
    bundle.set_args("sleep", "100")
    runp("create", "-b", str(bundle.path), cid)
    st = runp.state(cid)
    assert set(st) >= {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"}
    assert st["id"] == cid
    assert st["bundle"] == str(bundle.path)
    assert st["rootfs"] == str(bundle.rootfs)
    assert st["annotations"] == {"org.example.key": "value"}
    assert st["created"].endswith("Z") and "T" in st["created"]
    runp("delete", "--force", cid)


@pytest.mark.parametrize("sig,expect", [("KILL", 137), ("SIGKILL", 137), ("9", 137),
                                        ("TERM", 143), ("15", 143), ("usr1", 138)])
def test_kill_names_and_numbers(runp, bundle, cid, sig, expect, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    with_host_dir(bundle, host)
    # pid 1 ignores signals it has no handler for: install handlers that exit with 128+n
    bundle.set_args("sh", "-c", "trap 'exit 143' TERM; trap 'exit 138' USR1; "
                    "echo ready > /host/r; while :; do sleep 0.05; done; ")
    runp("run", "-d", "--bundle", str(bundle.path), cid)
    wait_for(lambda: (host / "r").exists(), what="container ready")
    pid = runp.state(cid)["pid"]
    runp("kill", cid, sig)
    wait_for(lambda: not proc_alive(pid), what="container exit")
    assert runp.state(cid)["status"] == "stopped"
    runp("delete", cid)


def test_kill_default_is_term_and_stopped_container_errors(runp, bundle, cid):
    bundle.set_args("sleep", "100")
    runp("run", "-d", "-b", str(bundle.path), cid)
    runp("kill", cid)  # SIGTERM: pid 1 without handler ignores it, so nothing changes
    time.sleep(0.2)
    assert runp.state(cid)["status"] == "running"
    runp("kill", cid, "KILL")
    wait_for(lambda: runp.state(cid)["status"] == "stopped")
    p = runp("kill", cid, "KILL", check=False)
    assert p.returncode == 1
    assert b"container not running" in p.stderr
    assert runp("kill", "--all", cid, "KILL", check=False).returncode == 0
    runp("delete", cid)


def test_delete_running_needs_force(runp, bundle, cid):
    bundle.set_args("sleep", "100")
    runp("run", "-d", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    p = runp("delete", cid, check=False)
    assert p.returncode == 1
    assert b"not stopped" in p.stderr
    assert proc_alive(pid)
    runp("delete", "--force", cid)
    assert not proc_alive(pid)
    assert not (runp.root / cid).exists()


def test_delete_created_needs_force(runp, bundle, cid):
    runp("create", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    assert runp("delete", cid, check=False).returncode == 1
    runp("delete", "-f", cid)
    wait_for(lambda: not proc_alive(pid))


def test_delete_force_unknown_id_is_ok(runp):
    assert runp("delete", "--force", "no-such-container").returncode == 0
    p = runp("delete", "no-such-container", check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr
    p = runp("state", "no-such-container", check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr


@pytest.mark.parametrize("code", [0, 1, 7, 255])
def test_run_returns_exit_status(runp, bundle, cid, code):
    bundle.set_args("sh", "-c", f"exit {code}")
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == code
    assert cid not in runp.ids(), "run must delete the container"


def test_run_forwards_sigterm(runp, bundle, cid, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    with_host_dir(bundle, host)
    bundle.set_args("sh", "-c", "trap 'exit 42' TERM; echo up > /host/up; "
                    "while :; do sleep 0.05; done")
    proc = subprocess.Popen(runp.cmd("run", "-b", str(bundle.path), cid))
    try:
        wait_for(lambda: (host / "up").exists(), what="container up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 42
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_output_and_stdin(runp, bundle, cid):
    bundle.set_args("sh", "-c", "read x; echo got:$x; echo err >&2")
    p = runp("run", "-b", str(bundle.path), cid, input=b"hello\n")
    assert p.stdout == b"got:hello\n"
    assert p.stderr == b"err\n"


def test_parallel_creates_of_one_id(runp, make_bundle, cid):
    bundles = [make_bundle() for _ in range(4)]
    for b in bundles:
        b.set_args("sleep", "100")
    results = []

    def go(b):
        results.append(runp("create", "-b", str(b.path), cid, check=False))
    threads = [threading.Thread(target=go, args=(b,)) for b in bundles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.returncode == 0]
    assert len(ok) == 1, [r.stderr for r in results]
    for r in results:
        if r.returncode != 0:
            assert b"already exists" in r.stderr
    assert runp.state(cid)["status"] == "created"
    runp("delete", "--force", cid)


def test_pid_file(runp, bundle, cid, tmp_path):
    pidfile = tmp_path / "sub" / "init.pid"
    pidfile.parent.mkdir()
    bundle.set_args("sleep", "100")
    runp("create", "-b", str(bundle.path), "--pid-file", str(pidfile), cid)
    text = pidfile.read_text()
    assert text == str(runp.state(cid)["pid"]), "decimal pid, no newline"
    assert not [n for n in os.listdir(pidfile.parent) if n != "init.pid"], "temp file left"
    runp("delete", "-f", cid)


def test_relative_pid_file_and_bundle(runp, bundle, cid):
    bundle.set_args("sleep", "100")
    runp("create", "--pid-file", "my.pid", cid, cwd=bundle.path)
    assert (bundle.path / "my.pid").read_text() == str(runp.state(cid)["pid"])
    runp("delete", "-f", cid)


def test_inherited_fd3_not_visible(runp, bundle, cid, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    bundle.set_args("sh", "-c", "ls /proc/self/fd; cat /proc/self/fd/3 2>/dev/null && echo LEAKED")
    fd = os.open(secret, os.O_RDONLY)  # inheritable: like the containerd shim's socket
    try:
        p = subprocess.run(runp.cmd("run", "-b", str(bundle.path), cid), capture_output=True,
                           pass_fds=(fd,), timeout=60)
    finally:
        os.close(fd)
    assert p.returncode != 0 or b"LEAKED" not in p.stdout
    fds = p.stdout.decode().split()
    assert "LEAKED" not in fds
    assert set(fds) <= {"0", "1", "2", "3"}, fds  # 3 is ls's own directory fd


def run_with_fd3(runp, path, args, env_extra: str = "") -> subprocess.CompletedProcess:
    """Run runp with `path` open on fd 3 (set up in a wrapper, not in the test process)."""
    script = (f"import os; fd=os.open({str(path)!r}, os.O_RDONLY); os.dup2(fd, 3) if fd != 3 else None; os.set_inheritable(3, True); {env_extra}"
              f"os.execv({runp.binary!r}, {runp.cmd(*args)!r})")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)


def test_preserve_fds(runp, bundle, cid, tmp_path):
    f = tmp_path / "data"
    f.write_text("passed through")
    bundle.set_args("cat", "/proc/self/fd/3")
    p = run_with_fd3(runp, f, ["run", "--preserve-fds", "1", "-b", str(bundle.path), cid])
    assert p.stdout == b"passed through", p


def test_listen_fds(runp, bundle, cid, tmp_path):
    f = tmp_path / "sock"
    f.write_text("listener")
    bundle.set_args("sh", "-c", "echo $LISTEN_FDS $LISTEN_PID; cat /proc/self/fd/3")
    p = run_with_fd3(runp, f, ["run", "-b", str(bundle.path), cid],
                     "os.environ['LISTEN_FDS']='1'; os.environ['LISTEN_PID']=str(os.getpid()); ")
    assert p.stdout == b"1 1\nlistener", p.stderr


def test_list_formats(runp, bundle, cid):
    bundle.set_args("sleep", "100")
    runp("create", "-b", str(bundle.path), cid)
    table = runp("list").stdout.decode().splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[0] == cid and table[1].split()[2] == "created"
    data = json.loads(runp("list", "--format", "json").stdout)
    assert data[0]["id"] == cid and data[0]["status"] == "created" and data[0]["owner"] == "root"
    assert runp("list", "-q").stdout.decode() == cid + "\n"
    runp("delete", "-f", cid)


def test_start_twice_fails(runp, bundle, cid):
    bundle.set_args("sleep", "100")
    runp("create", "-b", str(bundle.path), cid)
    runp("start", cid)
    p = runp("start", cid, check=False)
    assert p.returncode == 1
    runp("delete", "-f", cid)


def test_stopped_before_start_if_init_killed(runp, bundle, cid):
    runp("create", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: runp.state(cid)["status"] == "stopped")
    p = runp("start", cid, check=False)
    assert p.returncode == 1
    runp("delete", cid)


def test_invalid_container_ids(runp, bundle):
    for bad in ("../x", "a/b", "..", ""):
        p = runp("create", "-b", str(bundle.path), bad, check=False)
        assert p.returncode == 1
    assert not runp.root.exists() or not os.listdir(runp.root)


def test_version_format():
    from conftest import RUNP
    out = subprocess.run([RUNP, "--version"], capture_output=True, check=True).stdout.decode()
    lines = out.splitlines()
    assert lines[0].startswith("runp version ")
    assert lines[1].startswith("commit: ")
    assert lines[2].startswith("spec: 1.")


def test_json_log_on_error(runp, tmp_path):
    logf = tmp_path / "log.json"
    p = subprocess.run([runp.binary, "--root", str(runp.root), "--log", str(logf), "--log-format",
                        "json", "state", "nope"], capture_output=True)
    assert p.returncode == 1
    lines = [json.loads(line) for line in logf.read_text().splitlines()]
    assert lines[-1]["level"] == "error"
    assert "does not exist" in lines[-1]["msg"]
    assert "time" in lines[-1]


def test_library_api(tmp_path, bundle):
    """runtime.Container works from Python without the CLI."""
    from runtime import Container
    bundle.set_args("sleep", "100")
    root = str(tmp_path / "libroot")
    c = Container.create(root, new_id(), str(bundle.path))
    try:
        assert c.status() == "created"
        c.start()
        assert c.status() == "running"
        c.kill(signal.SIGKILL)
        assert c.wait_stopped(10)
        assert c.status() == "stopped"
    finally:
        c.delete(force=True)
    assert not os.listdir(root)


def test_init_pipe_reads_what_a_failed_init_sent():
    """An init that fails before it reads "go" exits with that message unread: the kernel
    then reports ECONNRESET once, ahead of the init's queued "error". The parent must still
    read the error (under load this turned a config error into "Connection reset by peer")."""
    from runtime.init import InitPipe
    from runtime.linux import fdpass
    parent, child = fdpass.socketpair()
    try:
        pipe = InitPipe(parent)
        InitPipe(child).send("error", "config.json: linux.namespaces[1].path: nope")
        pipe.send("go")  # never read
        child.close()
        assert pipe.recv() == ("error", "config.json: linux.namespaces[1].path: nope")
        assert pipe.recv() == ("eof", "")
    finally:
        parent.close()
