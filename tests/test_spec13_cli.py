"""runc 1.2/1.3 command-line additions (issue #15), each with a real container:

- `--pidfd-socket` on create, run and exec: a pidfd of the container's process arrives over
  that AF_UNIX socket with SCM_RIGHTS, the payload naming the kind as runc's init does
  ("standard" for the init, "setns" for an exec'd process); signalling it reaches that process.
- `update --cpu-burst` / `--cpu-idle` (and the same fields in `update --resources`):
  cpu.cfs_burst_us / cpu.max.burst and cpu.idle in the container's cgroup.
- `run --no-subreaper`: what the container orphans (no pid namespace of its own) is no longer
  re-parented to runp; side by side with runc 1.1.5, which has that flag (and none of the
  others: "flag provided but not defined").
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import force_delete, new_id

RUNC = shutil.which("runc")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def listener(tmp_path):
    """A listening AF_UNIX socket: runp connects and sends while the test is not yet
    accepting (the message waits in the socket's buffer)."""
    path = tmp_path / "pidfd.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(4)
    s.settimeout(10)
    yield s, str(path)
    s.close()


def receive(s: socket.socket) -> tuple[bytes, int]:
    conn, _ = s.accept()
    with conn:
        msg, fds, _flags, _addr = socket.recv_fds(conn, 64, 4)
    assert len(fds) == 1, fds
    return msg, fds[0]


def pidfd_pid(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return int(next(ln for ln in f if ln.startswith("Pid:")).split()[1])


def exited(fd: int, timeout: float = 10) -> bool:
    """A pidfd polls readable once its process has exited."""
    return bool(select.select([fd], [], [], timeout)[0])


def test_pidfd_socket_create(runp, bundle, cid, listener):
    s, path = listener
    bundle.set_args("sleep", "60")
    runp("create", "--pidfd-socket", path, "-b", str(bundle.path), cid)
    msg, fd = receive(s)
    try:
        assert msg == b"standard"
        pid = runp.state(cid)["pid"]
        assert pidfd_pid(fd) == pid
        runp("start", cid)
        assert not exited(fd, 0)
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        assert exited(fd)
    finally:
        os.close(fd)


def test_pidfd_socket_run_detached(runp, bundle, cid, listener):
    s, path = listener
    bundle.set_args("sleep", "60")
    runp("run", "-d", "--pidfd-socket", path, "-b", str(bundle.path), cid)
    msg, fd = receive(s)
    try:
        assert msg == b"standard" and pidfd_pid(fd) == runp.state(cid)["pid"]
    finally:
        os.close(fd)


def test_pidfd_socket_exec(runp, bundle, cid, listener, tmp_path):
    s, path = listener
    bundle.set_args("sleep", "60")
    runp("run", "-d", "-b", str(bundle.path), cid)
    pid_file = tmp_path / "exec.pid"
    runp("exec", "-d", "--pidfd-socket", path, "--pid-file", str(pid_file), cid, "sleep", "60")
    msg, fd = receive(s)
    try:
        assert msg == b"setns"
        pid = int(pid_file.read_text())
        assert pidfd_pid(fd) == pid and pid != runp.state(cid)["pid"]
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        assert exited(fd)
    finally:
        os.close(fd)


def test_pidfd_socket_missing_fails_and_leaves_nothing(runp, bundle, cid, tmp_path):
    bundle.set_args("sleep", "60")
    path = tmp_path / "nobody-listens.sock"
    p = runp("create", "--pidfd-socket", str(path), "-b", str(bundle.path), cid, check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.startswith(f"runp: --pidfd-socket {path}: "), err
    assert "no such file or directory" in err.lower(), err
    assert not (runp.root / cid).exists()


# --- update --cpu-burst / --cpu-idle ------------------------------------------------------------

def cpu_file(pid: int, v1: str, v2: str) -> str:
    """A cpu controller file of the cgroup `pid` is in (the v1 cpu hierarchy, else cgroup2)."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f]
    for _, ctrls, path in lines:
        if "cpu" in ctrls.split(","):
            for mnt in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
                if os.path.exists(f"{mnt}{path}/{v1}"):
                    return f"{mnt}{path}/{v1}"
    path = next(p for _, c, p in lines if c == "")
    return f"/sys/fs/cgroup{path}/{v2}"


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def test_update_cpu_burst_and_idle(runp, bundle, cid):
    bundle.config["linux"]["resources"] = {"cpu": {"quota": 50000, "period": 100000}}
    bundle.set_args("sleep", "60")
    runp("run", "-d", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    burst = cpu_file(pid, "cpu.cfs_burst_us", "cpu.max.burst")
    idle = cpu_file(pid, "cpu.idle", "cpu.idle")
    if not os.path.exists(burst) or not os.path.exists(idle):
        pytest.skip("this kernel has no cpu burst or cpu.idle")
    assert (read(burst), read(idle)) == ("0", "0")
    runp("update", "--cpu-burst", "20000", "--cpu-idle", "1", cid)
    assert (read(burst), read(idle)) == ("20000", "1")
    runp("update", "--resources", "-", cid,
         input=json.dumps({"cpu": {"burst": 30000, "idle": 0}}).encode())
    assert (read(burst), read(idle)) == ("30000", "0")
    p = runp("update", "--cpu-burst", "-5", cid, check=False)
    assert p.returncode == 1 and b"--cpu-burst" in p.stderr, p.stderr
    p = runp("update", "--cpu-idle", "7", cid, check=False)
    assert p.returncode == 1 and b"--cpu-idle" in p.stderr, p.stderr
    assert (read(burst), read(idle)) == ("30000", "0")


def test_config_cpu_burst_and_idle_applied(runp, bundle, cid):
    bundle.config["linux"]["resources"] = {"cpu": {"quota": 50000, "period": 100000,
                                                   "burst": 10000, "idle": 1}}
    bundle.set_args("sleep", "60")
    runp("run", "-d", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    burst = cpu_file(pid, "cpu.cfs_burst_us", "cpu.max.burst")
    if not os.path.exists(burst):
        pytest.skip("this kernel has no cpu burst")
    assert read(burst) == "10000"
    assert read(cpu_file(pid, "cpu.idle", "cpu.idle")) == "1"


# --- run --no-subreaper -------------------------------------------------------------------------

ORPHAN = ("sh -c 'sleep 30 >/dev/null 2>&1 & echo $! > /tmp/orphan'; sleep 0.3; "
          "o=$(cat /tmp/orphan); grep PPid /proc/$o/status; kill $o")


@pytest.mark.parametrize("runtime", ["runp", "runc"])
@pytest.mark.parametrize("flag", [None, "--no-subreaper"])
def test_no_subreaper(runp, bundle, tmp_path, flag, runtime):
    """Without a pid namespace an orphan goes to the nearest subreaper: the runtime itself,
    unless --no-subreaper; runc 1.1.5 (which has the flag) side by side."""
    if runtime == "runc" and RUNC is None:
        pytest.skip("runc is not installed")
    cmd = runp.cmd() if runtime == "runp" else [RUNC, "--root", str(tmp_path / "runc-root")]
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"]
                                            if ns["type"] != "pid"]
    bundle.set_args("sh", "-c", ORPHAN)
    cid = new_id("reaper")
    try:
        p = subprocess.Popen(cmd + ["run", *([flag] if flag else []), "-b", str(bundle.path), cid],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        out, err = p.communicate(timeout=60)
    finally:
        force_delete(cmd, cid)
    assert p.returncode == 0, err
    ppid = int(out.decode().split()[1])
    if flag is None:
        assert ppid == p.pid
    else:
        assert ppid != p.pid and ppid > 0
