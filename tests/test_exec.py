"""`runp exec`: every flag observed from inside the container, detach + pid file, exit codes,
namespaces and cgroup of the new process, user namespaces, paused and stopped containers."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_traversable, proc_alive

CAP_SYS_ADMIN = 21


def start(runp, bundle, cid, *args: str) -> int:
    """A running container whose init is `args` (default: sleep); its pid."""
    bundle.set_args(*(args or ("sleep", "1000")))
    runp("run", "-d", "-b", str(bundle.path), cid)
    return runp.state(cid)["pid"]


def out(runp, *args: str) -> str:
    """stdout of `runp exec ARGS...` (flags, the container id, the command), which must succeed."""
    p = runp("exec", *args, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")




def wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while proc_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.02)


# --- exit status ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args,code", [(["true"], 0), (["false"], 1), (["sh", "-c", "exit 3"], 3),
                                       (["sh", "-c", "kill -9 $$"], 137),
                                       (["sh", "-c", "kill -TERM $$"], 143)])
def test_exit_status(runp, bundle, cid, args, code):
    start(runp, bundle, cid)
    assert runp("exec", cid, *args, check=False).returncode == code


def test_output_and_args(runp, bundle, cid):
    start(runp, bundle, cid)
    # flags end at the container id: -l, -h and -- belong to the command
    assert out(runp, cid, "sh", "-c", 'echo "$@"', "zero", "-l", "-h", "--", "x") == "-l -h -- x\n"


def test_executable_not_found(runp, bundle, cid):
    start(runp, bundle, cid)
    p = runp("exec", cid, "no-such-thing", check=False)
    assert p.returncode != 0
    assert b"executable file not found" in p.stderr
    p = runp("exec", cid, "/etc/passwd", check=False)
    assert p.returncode != 0 and b"permission denied" in p.stderr


def test_args_required(runp, bundle, cid):
    start(runp, bundle, cid)
    p = runp("exec", cid, check=False)
    assert p.returncode != 0 and b"args cannot be empty" in p.stderr


# --- each flag, observed from inside -------------------------------------------------------------

def test_user_and_groups(runp, bundle, cid):
    start(runp, bundle, cid)
    assert out(runp, cid, "id") == "uid=0(root) gid=0(root)\n"
    assert out(runp, "-u", "1000:1000", "-g", "10", "-g", "11", cid, "id") == \
        "uid=1000(user) gid=1000(user) groups=10,11\n"
    assert out(runp, "--user", "1000", cid, "id") == "uid=1000(user) gid=0(root)\n"
    p = runp("exec", "-u", "user", cid, "id", check=False)
    assert p.returncode != 0 and b"--user" in p.stderr


def test_user_home(runp, bundle, cid):
    start(runp, bundle, cid)
    assert out(runp, "-u", "1000", cid, "sh", "-c", "echo $HOME") == "/home/user\n"


def test_cwd(runp, bundle, cid):
    start(runp, bundle, cid)
    assert out(runp, cid, "pwd") == "/\n"
    assert out(runp, "--cwd", "/tmp", cid, "pwd") == "/tmp\n"
    p = runp("exec", "--cwd", "/nonexistent", cid, "pwd", check=False)
    assert p.returncode != 0 and b"/nonexistent" in p.stderr


def test_env(runp, bundle, cid):
    bundle.config["process"]["env"].append("FROM_CONFIG=1")
    start(runp, bundle, cid)
    env = out(runp, "-e", "A=1", "--env", "B=two words", "-e", "FROM_CONFIG=2", cid, "env").splitlines()
    assert "A=1" in env and "B=two words" in env
    assert "FROM_CONFIG=2" in env and "FROM_CONFIG=1" not in env
    assert any(e.startswith("PATH=") for e in env)
    p = runp("exec", "-e", "NOVALUE", cid, "true", check=False)
    assert p.returncode != 0 and b"NOVALUE" in p.stderr


def test_caps(runp, bundle, cid):
    start(runp, bundle, cid)
    base = int(status_field(out(runp, cid, "cat", "/proc/self/status"), "CapEff"), 16)
    assert not base >> CAP_SYS_ADMIN & 1
    st = out(runp, "--cap", "CAP_SYS_ADMIN", cid, "cat", "/proc/self/status")
    for name in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status_field(st, name), 16) == base | 1 << CAP_SYS_ADMIN, name
    # an unknown capability is dropped with a warning, as runc does
    p = runp("exec", "-c", "CAP_NO_SUCH", cid, "true", check=False)
    assert p.returncode == 0 and b"CAP_NO_SUCH" in p.stderr


def test_no_new_privs(runp, bundle, cid):
    bundle.config["process"]["noNewPrivileges"] = False
    start(runp, bundle, cid)
    assert status_field(out(runp, cid, "cat", "/proc/self/status"), "NoNewPrivs") == "0"
    st = out(runp, "--no-new-privs", cid, "cat", "/proc/self/status")
    assert status_field(st, "NoNewPrivs") == "1"


def test_labels_ignored_without_lsm(runp, bundle, cid):
    from runtime.process import lsm_enabled
    if any(lsm_enabled()):
        pytest.skip("an LSM is enabled here")
    start(runp, bundle, cid)
    assert out(runp, "--process-label", "system_u:system_r:x:s0", "--apparmor", "p", cid,
               "echo", "ok") == "ok\n"


def test_rlimits_from_config(runp, bundle, cid):
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]
    start(runp, bundle, cid)
    assert out(runp, cid, "sh", "-c", "ulimit -n; ulimit -Hn") == "321\n654\n"


def test_process_file(runp, bundle, cid, tmp_path):
    start(runp, bundle, cid)
    proc = {"args": ["sh", "-c", "id; pwd; echo $FOO; ulimit -n; grep -E 'CapEff|NoNewPrivs' /proc/self/status"],
            "cwd": "/tmp", "env": ["PATH=/bin", "FOO=bar"],
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
            # a non-root uid keeps capabilities across execve only as ambient ones
            "capabilities": {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted",
                                                       "inheritable", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}],
            "noNewPrivileges": True}
    pf = tmp_path / "process.json"
    pf.write_text(json.dumps(proc))
    # the positional command and flags like --cwd are ignored with --process (runc)
    lines = out(runp, "--process", str(pf), "--cwd", "/", cid, "ignored").splitlines()
    assert lines[0] == "uid=1000(user) gid=1000(user) groups=5"
    assert lines[1:4] == ["/tmp", "bar", "100"]
    assert int(status_field("\n".join(lines), "CapEff"), 16) == 1 << 5
    assert status_field("\n".join(lines), "NoNewPrivs") == "1"


def test_process_file_errors_name_the_file(runp, bundle, cid, tmp_path):
    start(runp, bundle, cid)
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps({"args": [], "cwd": "/"}))
    p = runp("exec", "-p", str(pf), cid, check=False)
    assert p.returncode != 0
    assert f"{pf}: process.args".encode() in p.stderr, p.stderr
    pf.write_text("{")
    p = runp("exec", "-p", str(pf), cid, check=False)
    assert p.returncode != 0 and b"invalid JSON" in p.stderr
    pf.write_text(json.dumps({"args": ["true"], "cwd": "/",
                              "capabilities": {"bounding": [5]}}))
    p = runp("exec", "-p", str(pf), cid, check=False)
    assert p.returncode != 0
    assert f"{pf}: process.capabilities.bounding[0]".encode() in p.stderr, p.stderr
    # a capability that cannot be granted is a warning naming the file (config.md)
    pf.write_text(json.dumps({"args": ["true"], "cwd": "/",
                              "capabilities": {"bounding": ["CAP_NO_SUCH"]}}))
    p = runp("exec", "-p", str(pf), cid, check=False)
    assert p.returncode == 0
    assert f"{pf}: process.capabilities.bounding[0]".encode() in p.stderr, p.stderr


# --- detach, pid file, namespaces, cgroup --------------------------------------------------------

def test_detach_pid_file(runp, bundle, cid, tmp_path):
    with_cgroup_ns(bundle)
    init = start(runp, bundle, cid)
    pf = tmp_path / "exec.pid"
    t0 = time.monotonic()
    runp("exec", "-d", "--pid-file", str(pf), cid, "sleep", "100")
    assert time.monotonic() - t0 < 10
    text = pf.read_text()
    assert text.isdigit(), repr(text)  # decimal, no newline
    pid = int(text)
    assert proc_alive(pid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00100\x00"
    assert not list(tmp_path.glob("exec.pid.*")), "temporary pid file left behind"
    for ns in ("pid", "mnt", "net", "ipc", "uts", "cgroup"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    assert Path(f"/proc/{pid}/cgroup").read_text() == Path(f"/proc/{init}/cgroup").read_text()
    nspid = status_field(Path(f"/proc/{pid}/status").read_text(), "NSpid").split()
    assert nspid[0] == str(pid) and len(nspid) == 2 and nspid[1] != "1"
    # the process is in the container's session-less world: its own session, not runp's
    assert os.getsid(pid) == pid
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)


def test_detach_returns_while_running(runp, bundle, cid, tmp_path):
    start(runp, bundle, cid)
    host = bundle.rootfs / "tmp"
    runp("exec", "-d", cid, "sh", "-c", "sleep 1; echo done > /tmp/mark")
    assert not (host / "mark").exists()
    deadline = time.monotonic() + 10
    while not (host / "mark").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_same_namespaces_foreground(runp, bundle, cid):
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    with_cgroup_ns(bundle)
    init = start(runp, bundle, cid)
    names = ("pid", "mnt", "net", "ipc", "uts", "cgroup", "time")
    seen = out(runp, cid, "sh", "-c", " ".join(f"readlink /proc/self/ns/{n};" for n in names))
    assert seen.split() == [os.readlink(f"/proc/{init}/ns/{n}") for n in names]
    # pid 1 of the container is its init, seen from the exec'd process
    assert out(runp, cid, "cat", "/proc/1/cmdline") == "sleep\x001000\x00"
    assert out(runp, cid, "hostname") == "runp\n"


def with_cgroup_ns(bundle) -> None:
    """`runp spec`, like runc's, has a cgroup namespace only on a pure cgroup v2 host."""
    if not any(ns["type"] == "cgroup" for ns in bundle.config["linux"]["namespaces"]):
        bundle.config["linux"]["namespaces"].append({"type": "cgroup"})


def test_in_container_cgroup(runp, bundle, cid, tmp_path):
    with_cgroup_ns(bundle)
    init = start(runp, bundle, cid)
    host_view = Path(f"/proc/{init}/cgroup").read_text()
    inside = out(runp, cid, "cat", "/proc/self/cgroup")
    # the cgroup namespace's root is the container's cgroup: the process is at its root
    assert all(line.endswith(":/") for line in inside.splitlines()), inside
    pf = tmp_path / "p"
    runp("exec", "-d", "--pid-file", str(pf), cid, "sleep", "100")
    pid = int(pf.read_text())
    assert Path(f"/proc/{pid}/cgroup").read_text() == host_view
    os.kill(pid, signal.SIGKILL)


def test_sub_cgroup(runp, bundle, cid, tmp_path):
    init = start(runp, bundle, cid)
    from runtime.linux import sys as lsys
    from runtime.linux.cgroups import Manager
    st = json.loads((runp.root / cid / "state.json").read_text())
    mgr = Manager.from_dict(st["runp"]["cgroup"])
    pids_dir = mgr.paths.get("pids") or mgr.unified
    ctrl = "pids" if "pids" in mgr.paths else "unified"
    sub = Path(pids_dir) / "sub"
    sub.mkdir()
    # The exec'd process outlives `runp exec -d` and is re-parented to the nearest subreaper:
    # be it, and reap it. Else its zombie waits for the host's pid 1 (this VM's reaps only now
    # and then), and the dying container init waits for that zombie (zap_pid_ns_processes).
    lsys.set_child_subreaper()
    pid = 0
    try:
        pf = tmp_path / "p"
        runp("exec", "-d", "--pid-file", str(pf), "--cgroup", f"{ctrl}:sub", cid, "sleep", "100")
        pid = int(pf.read_text())
        line = [ln for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                if ln.split(":")[1] == (ctrl if ctrl != "unified" else "")][0]
        assert line.endswith("/sub"), line
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pid = 0
        p = runp("exec", "--cgroup", "pids:missing", cid, "true", check=False)
        assert p.returncode != 0 and b"missing" in p.stderr
        p = runp("exec", "--cgroup", "../escape", cid, "true", check=False)
        assert p.returncode != 0 and b"--cgroup" in p.stderr
    finally:
        lsys.prctl(lsys.PR_SET_CHILD_SUBREAPER, 0)
        if pid:  # failed half-way: the exec'd process is still ours to kill and reap
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        runp("delete", "-f", cid)
        assert not sub.exists()
    wait_gone(init)


def test_seccomp_of_the_container_applies(runp, bundle, cid):
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    start(runp, bundle, cid)
    p = runp("exec", cid, "mkdir", "/tmp/d", check=False)
    assert p.returncode != 0 and b"Operation not permitted" in p.stderr
    assert status_field(out(runp, cid, "cat", "/proc/self/status"), "Seccomp") == "2"


def test_fds_not_leaked(runp, bundle, cid):
    start(runp, bundle, cid)
    r, w = os.pipe()
    try:
        # runp gets two extra inheritable fds; the process must not
        p = subprocess.run(runp.cmd("exec", cid, "ls", "/proc/self/fd"), pass_fds=(r, w),
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == [b"0", b"1", b"2", b"3"]  # 3 is ls's own directory fd
        # fd 5 open in runp (3 and 4 not): --preserve-fds 3 passes 3..5, the gap filled
        p = subprocess.run(runp.cmd("exec", "--preserve-fds", "3", cid, "ls", "-l", "/proc/self/fd"),
                           pass_fds=(5,), preexec_fn=lambda: os.dup2(r, 5), capture_output=True,
                           timeout=30)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, p.stderr
    fds = {ln.split()[-3]: ln.split()[-1] for ln in p.stdout.decode().splitlines() if "->" in ln}
    assert set(fds) == {"0", "1", "2", "3", "4", "5"} or set(fds) == {"0", "1", "2", "3", "4", "5", "6"}
    assert fds["3"] == fds["4"] == "/dev/null"
    assert fds["5"].startswith("pipe:")


def test_listen_fds(runp, bundle, cid):
    start(runp, bundle, cid)
    r, w = os.pipe()
    try:
        # socket activation: LISTEN_PID is runp's pid, so set it in a shell that execs runp
        script = 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$@"'
        p = subprocess.run(["sh", "-c", script, "sh", *runp.cmd(
            "exec", cid, "sh", "-c", 'echo $LISTEN_FDS $LISTEN_PID $$; ls -l /proc/self/fd/')],
            pass_fds=(3,), preexec_fn=lambda: os.dup2(r, 3), capture_output=True, timeout=30)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    n, lpid, me = lines[0].split()
    assert n == "1" and lpid == me  # LISTEN_PID is the process's pid in the container
    assert any(" 3 -> pipe:" in ln for ln in lines[1:]), lines


# --- states --------------------------------------------------------------------------------------

def test_exec_into_created_container(runp, bundle, cid):
    bundle.set_args("sleep", "1000")
    runp("create", "-b", str(bundle.path), cid)
    assert out(runp, cid, "echo", "hi") == "hi\n"
    assert runp.state(cid)["status"] == "created"


def test_exec_into_paused_container(runp, bundle, cid, tmp_path):
    start(runp, bundle, cid)
    runp("pause", cid)
    p = runp("exec", cid, "true", check=False)
    assert p.returncode != 0 and b"cannot exec in a paused container" in p.stderr
    # --ignore-paused: the process starts frozen and runs once the container is resumed
    pf = tmp_path / "p"
    proc = subprocess.Popen(runp.cmd("exec", "-d", "--ignore-paused", "--pid-file", str(pf), cid,
                                     "sleep", "100"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        runp("resume", cid)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    os.kill(int(pf.read_text()), signal.SIGKILL)


def test_exec_into_stopped_container(runp, bundle, cid):
    bundle.set_args("true")
    runp("run", "-d", "-b", str(bundle.path), cid)
    deadline = time.monotonic() + 10
    while runp.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p = runp("exec", cid, "true", check=False)
    assert p.returncode != 0 and b"cannot exec in a stopped container" in p.stderr


def test_exec_unknown_container(runp):
    p = runp("exec", "no-such-container", "true", check=False)
    assert p.returncode != 0 and b"does not exist" in p.stderr


# --- user namespace ------------------------------------------------------------------------------

def test_exec_in_user_namespace(runp, bundle, cid, tmp_path):
    make_traversable(bundle.rootfs)
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    init = start(runp, bundle, cid)
    assert out(runp, cid, "id") == "uid=0(root) gid=0(root)\n"
    assert out(runp, "-u", "1000:1000", cid, "id") == "uid=1000(user) gid=1000(user)\n"
    assert out(runp, cid, "cat", "/proc/self/uid_map").split() == ["0", "200000", "65536"]
    pf = tmp_path / "p"
    runp("exec", "-d", "--pid-file", str(pf), "-u", "1000:1000", cid, "sleep", "100")
    pid = int(pf.read_text())
    st = Path(f"/proc/{pid}/status").read_text()
    assert status_field(st, "Uid").split()[0] == "201000"
    assert status_field(st, "Gid").split()[0] == "301000"
    for ns in ("user", "pid", "mnt"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    os.kill(pid, signal.SIGKILL)


# --- signals -------------------------------------------------------------------------------------

def test_signals_forwarded(runp, bundle, cid, tmp_path):
    start(runp, bundle, cid)
    marker = bundle.rootfs / "tmp" / "trap-ready"
    proc = subprocess.Popen(runp.cmd("exec", cid, "sh", "-c",
                                     "trap 'exit 42' TERM; touch /tmp/trap-ready; "
                                     "while :; do sleep 0.1; done"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 42
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_signal_while_exec_starts_is_not_fatal(runp, bundle, cid, tmp_path):
    """A signal that reaches `runp exec` while the process is being started (after the fork,
    before the wait) is held and forwarded once the process exists, as runc's signal handler
    queues it; before, it killed runp and left the process running without its waiter. The
    signal is sent when --debug logs the fork phase, inside that window."""
    start(runp, bundle, cid)
    fifo = tmp_path / "log"
    os.mkfifo(fifo)
    for _ in range(5):
        reader = os.open(fifo, os.O_RDWR)  # (a writer of its own: no EOF before runp opens it)
        proc = subprocess.Popen([runp.binary, "--root", str(runp.root), "--debug", "--log",
                                 str(fifo), "exec", cid, "sh", "-c", "trap 'exit 42' TERM; "
                                 "sleep 2; exit 3"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            buf = b""
            while b"phase fork" not in buf:
                assert select.select([reader], [], [], 20)[0], buf
                buf += os.read(reader, 4096)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=20)
            # forwarded: the process's trap (42), or its death by SIGTERM before the trap was set
            assert code in (42, 128 + signal.SIGTERM), code
        finally:
            os.close(reader)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_no_pivot_container(runp, bundle, cid):
    bundle.set_args("sleep", "1000")
    runp("run", "-d", "--no-pivot", "-b", str(bundle.path), cid)
    # the process sees the container's root, not the mount namespace's original one
    assert out(runp, cid, "cat", "/etc/passwd").startswith("root:x:0:0:root:/root:/bin/sh\n")
    assert out(runp, cid, "ls", "/").split() == sorted(os.listdir(bundle.rootfs))


def test_userns_container_joined_host_owned_netns(runp, bundle, cid):
    """A container with its own user namespace that joined a network namespace owned by the
    host's: exec must join the network namespace before the user namespace (runc 1.1 fails
    here with "failed to setns into net namespace")."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "1000"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        netns = os.readlink(f"/proc/{holder.pid}/ns/net")
        make_traversable(bundle.rootfs)
        lx = bundle.config["linux"]
        lx["namespaces"] = [n for n in lx["namespaces"] if n["type"] != "network"] + [
            {"type": "network", "path": f"/proc/{holder.pid}/ns/net"}, {"type": "user"}]
        lx["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        lx["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
        # sysfs needs a network namespace owned by the container's user namespace
        bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                                   if not m["destination"].startswith("/sys")]
        init = start(runp, bundle, cid)
        seen = out(runp, cid, "sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/user; id -u")
        assert seen.split() == [netns, os.readlink(f"/proc/{init}/ns/user"), "0"]
        runp("delete", "-f", cid)
    finally:
        holder.kill()
        holder.wait()


NOTIF_RECV = 0xC0502100  # SECCOMP_IOCTL_NOTIF_RECV: struct seccomp_notif is 80 bytes
NOTIF_SEND = 0xC0182101  # SECCOMP_IOCTL_NOTIF_SEND: struct seccomp_notif_resp is 24 bytes


def test_seccomp_notify_listener_gets_exec_fd(runp, bundle, cid, tmp_path):
    """With SCMP_ACT_NOTIFY the exec'd process's listener fd goes to the agent too, with the
    process's pid; the agent's answer is what the process sees."""
    import errno
    import fcntl
    import select
    import socket
    import struct
    import threading
    sock_path = str(tmp_path / "agent.sock")
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock_path,
        "listenerMetadata": "exec-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(4)
    messages: list[dict] = []
    fds: list[int] = []
    stop = threading.Event()

    def agent() -> None:
        """Accept listener fds; answer every notification with EXDEV."""
        while not stop.is_set():
            r, _, _ = select.select([listener, *fds], [], [], 0.1)
            for x in r:
                if x is listener:
                    conn, _ = listener.accept()
                    with conn:
                        msg, got, _, _ = socket.recv_fds(conn, 65536, 4)
                    messages.append(json.loads(msg))
                    fds.extend(got)
                    continue
                buf = bytearray(80)
                try:
                    fcntl.ioctl(x, NOTIF_RECV, buf, True)
                except OSError:
                    fds.remove(x)  # the filter's processes are gone
                    os.close(x)
                    continue
                nid = struct.unpack_from("=Q", buf)[0]
                resp = bytearray(struct.pack("=QqiI", nid, 0, -errno.EXDEV, 0))
                try:
                    fcntl.ioctl(x, NOTIF_SEND, resp)
                except OSError:
                    pass

    t = threading.Thread(target=agent, daemon=True)
    t.start()
    try:
        start(runp, bundle, cid)
        pf = tmp_path / "p"
        p = runp("exec", "--pid-file", str(pf), cid, "mkdir", "/tmp/d", check=False)
        assert p.returncode != 0 and b"cross-device" in p.stderr, p.stderr
        assert len(messages) == 2, messages  # the init's at create, the exec'd process's
        assert messages[1]["pid"] == int(pf.read_text())
        assert messages[1]["metadata"] == "exec-test" and messages[1]["state"]["id"] == cid
        runp("delete", "-f", cid)
    finally:
        stop.set()
        t.join(5)
        listener.close()
        for fd in fds:
            os.close(fd)


def test_help_and_flag_parsing(runp, bundle, cid):
    assert b"usage" in runp("exec", "--help").stdout
    start(runp, bundle, cid)
    # after the id everything belongs to the command, --help and -d included
    assert out(runp, cid, "echo", "--help", "-d") == "--help -d\n"
    p = runp("exec", "--no-such-flag", cid, "true", check=False)
    assert p.returncode != 0 and b"flag provided but not defined" in p.stderr


def test_process_not_dumpable_before_exec(runp, bundle, cid):
    """CVE-2019-5736: until it execs, the process entering the container is a copy of the
    host's Python, and nothing in the container may open it through /proc/PID/exe. Caught in
    the act: in a frozen container (--ignore-paused) it stops right after joining the cgroup,
    before its exec. The attacker is root of the container's user namespace, entered with
    nsenter (outside the frozen cgroup); it can read the exe of the container's own init."""
    make_traversable(bundle.rootfs)
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    init = start(runp, bundle, cid)
    runp("pause", cid)
    proc = subprocess.Popen(runp.cmd("exec", "--ignore-paused", cid, "true"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stuck = ""
        deadline = time.monotonic() + 10
        while not stuck:
            assert time.monotonic() < deadline, "the exec'd process never showed up"
            for d in os.listdir("/proc"):
                try:
                    st = Path(f"/proc/{d}/status").read_text() if d.isdigit() else ""
                except OSError:
                    continue
                if st and status_field(st, "PPid") == str(proc.pid):
                    ns = status_field(st, "NSpid").split()
                    stuck = ns[1] if len(ns) == 2 else ""
            time.sleep(0.05)
        probe = subprocess.run(
            ["nsenter", "-t", str(init), "-U", "-m", "-p", "--", "/bin/sh", "-c",
             f"id -u; readlink /proc/1/exe; readlink /proc/{stuck}/exe || echo denied"],
            capture_output=True, timeout=30)
        assert probe.stdout.decode().split() == ["0", "/bin/busybox", "denied"], probe
    finally:
        runp("resume", cid)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
