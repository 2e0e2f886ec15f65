"""The runc CVE classes, each attacked with a malicious bundle, rootfs or caller.

Every test says in its docstring what the attack is and which defence in runp stops it. Each was
checked to fail with that defence removed (noted as "Verified:"). The host side is watched with
canaries: directories and files outside the rootfs that must stay exactly as they were, and the
host's /proc/self/mountinfo, which must never show a mount of ours.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import select
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import mounted_with, new_id
from runtime.linux import arch
from runtime.linux.capabilities import capset

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

HOST_PYTHON = os.path.realpath(sys.executable)


# --- helpers ---------------------------------------------------------------------------------------

def wait_for(pred, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def snapshot(path: Path) -> dict[str, tuple]:
    """Everything about a tree that an escape could change (names, types, modes, owners,
    contents, link targets, mtimes)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in ["."] + dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            else:
                extra = ""
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                             st.st_mtime_ns, extra)
    return out


def host_mounts(*needles: str | Path) -> list[str]:
    """Lines of the host's mountinfo that mention any of `needles`."""
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if any(str(n) in ln for n in needles)]


class Canary:
    """A host directory next to the bundle that no container may touch."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "host-canary"
        self.dir.mkdir()
        (self.dir / "file").write_text("canary\n")
        (self.dir / "sub").mkdir()
        (self.dir / "sub" / "deep").write_text("deep canary\n")
        self.file = self.dir / "file"
        self.missing = self.dir / "must-not-appear"
        self.before = snapshot(self.dir)
        self.mounts_before = host_mounts(tmp_path)
        self.tmp_path = tmp_path

    def rel(self, link_dir: str) -> str:
        """A ../../ style link target, written at `link_dir` in the rootfs, aiming at the
        canary from the host's point of view."""
        depth = link_dir.strip("/").count("/") + 1 if link_dir.strip("/") else 0
        return "../" * (depth + 30) + str(self.dir).lstrip("/")

    def check(self) -> None:
        assert snapshot(self.dir) == self.before, "the host canary changed"
        assert host_mounts(self.tmp_path) == self.mounts_before, "a mount reached the host"


def run(runp, bundle, cid, *args: str, extra: tuple[str, ...] = ()):
    if args:
        bundle.set_args(*args)
    else:
        bundle.write()
    p = runp("run", *extra, "-b", str(bundle.path), cid, check=False)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


# struct seccomp_notif is 80 bytes, seccomp_notif_resp 24: _IOWR('!', 0|1, size)
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
USER_NOTIF_FLAG_CONTINUE = 1
SYS_execve = arch.number("execve")
SYS_execveat = arch.number("execveat")  # runp runs the checked program through its fd (process.Program)


class ExecGate:
    """A seccomp agent for a profile that sends execve to it. Every listener fd that arrives
    (the init's, and one per `runp exec`) is served: while armed, the first execve is held
    (the process is then past its privilege drop but still runp's Python) until released;
    every other execve continues."""

    def __init__(self, path: Path, armed: bool = True) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.sock.setblocking(False)
        self.armed = threading.Event()
        if armed:
            self.armed.set()
        self.held = threading.Event()
        self.release = threading.Event()
        self.stop = threading.Event()
        self.held_pid = 0
        self.fds: list[int] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def profile(self) -> dict:
        return {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(self.path),
                "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_NOTIFY"}]}

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                r, _, _ = select.select([self.sock, *self.fds], [], [], 0.1)
                for fd in r:
                    if fd is self.sock:
                        conn, _ = self.sock.accept()
                        with conn:
                            conn.setblocking(True)
                            _, fds, _, _ = socket.recv_fds(conn, 65536, 4)
                        self.fds += fds
                    else:
                        self._serve(fd)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def _serve(self, fd: int) -> None:
        buf = bytearray(80)
        try:
            fcntl.ioctl(fd, NOTIF_RECV, buf, True)
        except OSError:  # the process died, or the filter has no users left
            self.fds.remove(fd)
            os.close(fd)
            return
        nid, pid, _, nr = struct.unpack_from("=QIIi", buf)
        if nr in (SYS_execve, SYS_execveat) and self.armed.is_set() and not self.held.is_set():
            self.held_pid = pid
            self.held.set()
            self.release.wait(60)
        try:
            fcntl.ioctl(fd, NOTIF_SEND,
                        bytearray(struct.pack("=QqiI", nid, 0, 0, USER_NOTIF_FLAG_CONTINUE)))
        except OSError:
            pass

    def close(self) -> None:
        self.release.set()
        self.stop.set()
        self.thread.join(10)
        self.sock.close()
        for fd in self.fds:
            os.close(fd)


def probe_exe_as(pid: int, caps: frozenset[int] = frozenset()) -> dict[str, int]:
    """From a forked host process that is uid 0 with only `caps`: errno (0 = success) of
    readlink, O_RDONLY open and O_WRONLY|O_APPEND open (never written) of /proc/<pid>/exe."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setgroups([])
            capset(caps, caps, frozenset())
            res = {}
            for name, fn in (("readlink", lambda: os.readlink(f"/proc/{pid}/exe")),
                             ("open_ro", lambda: os.close(os.open(f"/proc/{pid}/exe", os.O_RDONLY))),
                             ("open_wr", lambda: os.close(os.open(f"/proc/{pid}/exe",
                                                                  os.O_WRONLY | os.O_APPEND)))):
                try:
                    fn()
                    res[name] = 0
                except OSError as e:
                    res[name] = e.errno
            os.write(w, json.dumps(res).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(child, 0)
    return json.loads(data)


# --- CVE-2019-5736: the host interpreter through /proc/PID/exe --------------------------------------

def test_init_is_not_dumpable_until_exec(runp, make_bundle, tmp_path):
    """Attack: container B shares container A's pid namespace with exactly the credentials
    A's process will have (uid 0, no capabilities at all). A seccomp agent holds A's init in
    its final execve, i.e. after it dropped its privileges, while it is still runp's Python.
    With the same uid and no more capabilities than B, only the "dumpable" flag decides whether
    B may follow /proc/1/exe to the host's python binary (and open it, to overwrite it later).
    The same probe is made from a host process with those credentials.
    Defence: every runp process is non-dumpable from the fork (init.child_main,
    set_dumpable(False)) until exec. Verified: without that call B reads the link
    (/usr/bin/python3.11) and opens the interpreter, and the test fails."""
    gate = ExecGate(tmp_path / "gate.sock")
    a, b = make_bundle(), make_bundle()
    ida, idb = new_id(), new_id()
    try:
        for bd in (a, b):
            bd.config["process"]["user"] = {"uid": 0, "gid": 0}
            bd.config["process"]["capabilities"] = {}
            bd.config["process"]["noNewPrivileges"] = True
        a.config["linux"]["seccomp"] = gate.profile()
        a.set_args("sleep", "100")
        runp("create", "-b", str(a.path), ida)
        pid = runp.state(ida)["pid"]
        # waiting for start the init still has all of root's capabilities: an unprivileged
        # process is refused whatever the dumpable flag (it lacks capabilities the init has)
        assert probe_exe_as(pid)["readlink"] == errno.EACCES
        runp("start", ida)
        assert gate.held.wait(10), f"the init's execve never reached the agent: {gate.error}"
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "runp:[2:INIT]"
        status = Path(f"/proc/{pid}/status").read_text()
        assert "CapEff:\t0000000000000000" in status and "\nUid:\t0\t0\t0\t0" in status

        probe = probe_exe_as(pid)
        assert probe == {"readlink": errno.EACCES, "open_ro": errno.EACCES,
                         "open_wr": errno.EACCES}, probe

        lx = b.config["linux"]
        lx["namespaces"] = [ns for ns in lx["namespaces"] if ns["type"] != "pid"]
        lx["namespaces"].append({"type": "pid", "path": f"/proc/{pid}/ns/pid"})
        script = ("cat /proc/1/comm; readlink /proc/1/exe && echo READLINK-OK; "
                  "(exec 3</proc/1/exe) && echo OPEN-RO-OK; "
                  "(exec 3>>/proc/1/exe) && echo OPEN-WR-OK; echo end")
        code, out, err = run(runp, b, idb, "sh", "-c", script)
        assert code == 0, err
        assert out.splitlines() == ["runp:[2:INIT]", "end"], (out, err)
        assert err.count("Permission denied") >= 2, err
    finally:
        gate.close()
    wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("busybox"), what="exec")
    runp("delete", "--force", ida)
    assert gate.error is None, gate.error


def exec_available(runp) -> bool:
    return runp("exec", "--help", check=False).returncode == 0


def test_exec_process_is_not_dumpable_until_exec(runp, bundle, cid, tmp_path):
    """Attack: as above, but on `runp exec`, the case of the original CVE: a process already
    running in the container (uid 0, no capabilities) watches for the runp process that
    `runp exec` sends in. The agent holds that process in its execve, after the privilege
    drop; a host process with the same credentials tries /proc/<pid>/exe.
    Defence: exec's helper and the process it forks are non-dumpable (exec._helper_main,
    set_dumpable(False)) until execve.
    Verified: without those calls the probe reads the link and opens the host interpreter."""
    if not exec_available(runp):
        pytest.skip("runp exec is not available")
    gate = ExecGate(tmp_path / "gate.sock", armed=False)
    proc = None
    try:
        bundle.config["process"]["user"] = {"uid": 0, "gid": 0}
        bundle.config["process"]["capabilities"] = {}
        bundle.config["process"]["noNewPrivileges"] = True
        bundle.config["linux"]["seccomp"] = gate.profile()
        bundle.set_args("sleep", "100")
        runp("run", "-d", "-b", str(bundle.path), cid)
        init = runp.state(cid)["pid"]
        wait_for(lambda: os.readlink(f"/proc/{init}/exe").endswith("busybox"), what="exec")
        gate.armed.set()
        proc = subprocess.Popen(runp.cmd("exec", "-d", cid, "sleep", "50"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert gate.held.wait(15), f"the exec'd process never reached the agent: {gate.error}"
        pid = gate.held_pid
        assert pid != init and os.readlink(f"/proc/{pid}/exe") == HOST_PYTHON
        assert "CapEff:\t0000000000000000" in Path(f"/proc/{pid}/status").read_text()
        probe = probe_exe_as(pid)
        assert probe == {"readlink": errno.EACCES, "open_ro": errno.EACCES,
                         "open_wr": errno.EACCES}, probe
    finally:
        gate.close()
        if proc is not None:
            proc.wait(30)
    runp("delete", "--force", cid)
    assert gate.error is None, gate.error


def evil_rootfs_with_python_libs(rootfs: Path) -> None:
    """What a malicious image needs so that the host's python, once the kernel runs it in the
    container, gets as far as running the attacker's code: the dynamic libraries and the bits
    of the standard library that python 3.11 needs to start (at the host's paths)."""
    libs = subprocess.run(["ldd", HOST_PYTHON], capture_output=True, text=True).stdout
    for line in libs.splitlines():
        for word in line.split():
            if word.startswith("/") and os.path.exists(word):
                dst = rootfs / word.lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(os.path.realpath(word), dst)
    stdlib = Path(os.__file__).parent
    dst = rootfs / str(stdlib).lstrip("/")
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(stdlib / "encodings", dst / "encodings", dirs_exist_ok=True)
    shutil.copy2(stdlib / "os.py", dst / "os.py")


EVIL_PY = """
import os
fd = os.open("/proc/self/exe", os.O_RDONLY)
st = os.fstat(fd)
print("HOLDING-HOST-INTERPRETER", st.st_dev, st.st_ino, flush=True)
"""


@pytest.mark.parametrize("entry", ["shebang", "shebang-via-symlink", "nested-shebang",
                                   "direct-magic-link", "pid1-exe"])
def test_entrypoint_cannot_exec_the_runtime_interpreter(runp, bundle, cid, entry):
    """Attack (the original CVE-2019-5736 route): the image's entrypoint is a script whose
    interpreter is /proc/self/exe (or a link to it, or a script chain ending there, or the
    entrypoint is the magic link itself). When runp's init execs it, the kernel resolves the
    magic link in the init, i.e. runs the HOST python with the container's credentials; with a
    few libraries planted in the image it runs the attacker's code, which opens the host
    interpreter and keeps the fd until no python is running, then overwrites it.
    Defence: process.exec_process refuses an executable or #! interpreter chain that goes
    through a magic link (openat2 RESOLVE_NO_MAGICLINKS), just before execve.
    Verified: without that check the container prints HOLDING-HOST-INTERPRETER with the
    host interpreter's inode."""
    r = bundle.rootfs
    evil_rootfs_with_python_libs(r)
    (r / "evil").write_text("#!/proc/self/exe -S\n" + EVIL_PY)
    (r / "bin" / "py").symlink_to("/proc/self/exe")
    (r / "evil-link").write_text("#!/bin/py -S\n" + EVIL_PY)
    (r / "evil-nested").write_text("#!/evil\n")
    for f in ("evil", "evil-link", "evil-nested"):
        (r / f).chmod(0o755)
    args = {"shebang": ["/evil"], "shebang-via-symlink": ["/evil-link"],
            "nested-shebang": ["/evil-nested"],
            "direct-magic-link": ["/proc/self/exe", "-S", "-c", EVIL_PY],
            "pid1-exe": ["/proc/1/exe", "-S", "-c", EVIL_PY]}[entry]
    code, out, err = run(runp, bundle, cid, *args)
    host = os.stat(HOST_PYTHON)
    assert f"{host.st_dev} {host.st_ino}" not in out, "the container held the host interpreter"
    assert "HOLDING" not in out and "Python" not in err, (out, err)
    assert code != 0 and "magic link" in err, (code, out, err)


@pytest.mark.parametrize("entry", ["shebang", "direct-magic-link"])
def test_exec_cannot_exec_the_runtime_interpreter(runp, bundle, cid, entry):
    """The same attack through `runp exec` (a script planted in the image, or the magic link
    named directly): the check is shared with the init (process.exec_process)."""
    if not exec_available(runp):
        pytest.skip("runp exec is not available")
    evil_rootfs_with_python_libs(bundle.rootfs)
    (bundle.rootfs / "evil").write_text("#!/proc/self/exe -S\n" + EVIL_PY)
    (bundle.rootfs / "evil").chmod(0o755)
    bundle.set_args("sleep", "100")
    runp("run", "-d", "-b", str(bundle.path), cid)
    args = ["/evil"] if entry == "shebang" else ["/proc/self/exe", "-S", "-c", EVIL_PY]
    p = runp("exec", cid, *args, check=False)
    out, err = p.stdout.decode(), p.stderr.decode()
    assert "HOLDING" not in out and "Python" not in err, (out, err)
    assert p.returncode != 0 and "magic link" in err, (p.returncode, out, err)
    runp("delete", "--force", cid)


# --- CVE-2024-21626 / CVE-2016-9962: leaked fds and the cwd -------------------------------------------

LEAKER = r"""
import json, os, socket, sys
keep = []
for num, kind, path in json.loads(sys.argv[1]):
    if kind == "dir":
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    elif kind == "path":
        fd = os.open(path, os.O_PATH)
    elif kind == "file":
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    elif kind == "pipe":
        fd, w = os.pipe()
        keep.append(os.dup2(w, 200))
        os.close(w)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        keep.append(s)
        fd = s.detach()
    if fd != num:
        os.dup2(fd, num)
        os.close(fd)
    os.set_inheritable(num, True)
os.execv(sys.argv[2], sys.argv[2:])
"""


def leak_fds(leaks: list[tuple[int, str, str]], cmd: list[str]) -> subprocess.CompletedProcess:
    """Run `cmd` (a runp command line) with the fds in `leaks` open and inheritable, as a
    careless caller (or the containerd shim, whose fd 3 is its socket) would leave them."""
    # the leaked numbers must be free in the wrapper: start it with only 0-2 open
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([sys.executable, "-I", "-c", LEAKER, json.dumps(leaks), *cmd],
                           stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=60,
                           close_fds=True)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read(), err.read()
    return p


def host_leaks(tmp_path: Path, canary: Canary) -> list[tuple[int, str, str]]:
    """fds 3..10: directories and O_PATH fds of the host's / and of the canary, a file, a
    pipe, a socket, the host's cgroup root (what runc leaked in CVE-2024-21626)."""
    return [(3, "dir", str(canary.dir)), (4, "path", str(canary.dir)), (5, "dir", "/"),
            (6, "path", "/"), (7, "file", str(tmp_path / "leaked-file")), (8, "pipe", ""),
            (9, "sock", ""), (10, "dir", "/sys/fs/cgroup")]


@pytest.mark.parametrize("preserve", [0, 2])
def test_leaked_fds_never_reach_the_container(runp, bundle, cid, tmp_path, preserve):
    """Attack: the caller of `runp create` leaks fds 3..10 (host / as a directory and as
    O_PATH, the canary, a file, a pipe, a socket, the cgroup root), none close-on-exec. Any of
    them in the container is a way out (fchdir, openat, /proc/self/fd/N/..).
    Defence: the init closes every fd but 0-2, the preserved ones and its own at fork
    (init.child_main) and again right before exec (process.exec_process, close_range).
    Verified: without both close_range calls fds 3..10 show up in the container process."""
    canary = Canary(tmp_path)
    bundle.set_args("sleep", "100")
    flags = ["--preserve-fds", str(preserve)] if preserve else []
    p = leak_fds(host_leaks(tmp_path, canary),
                 runp.cmd("create", *flags, "-b", str(bundle.path), cid))
    assert p.returncode == 0, p.stderr
    pid = runp.state(cid)["pid"]
    runp("start", cid)
    wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("busybox"), what="exec")
    fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
    assert fds == list(range(3 + preserve)), fds
    if preserve:
        assert os.readlink(f"/proc/{pid}/fd/3") == str(canary.dir)  # passed on purpose
    runp("delete", "--force", cid)
    canary.check()


@pytest.mark.parametrize("cwd", ["/proc/self/fd/3", "/proc/self/fd/5", "/proc/self/fd/10",
                                 "/proc/self/fd/3/sub", "/proc/self/fd/4/new/dir",
                                 "/proc/self/cwd", "/proc/1/root/..", "/proc/self/root/../../.."])
def test_cwd_through_leaked_fds_stays_inside(runp, bundle, cid, tmp_path, cwd):
    """Attack: process.cwd names /proc/self/fd/N (N one of the fds the caller leaked, or one
    of the init's own), or another /proc magic link, hoping to start the process with a host
    directory as its cwd (CVE-2024-21626: runc's leaked cgroup fd), or to have runp create the
    missing cwd on the host.
    Defence: leaked fds are closed before the cwd is created and entered; the cwd is created
    with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) (init._make_cwd) and the process
    refuses to run if getcwd() says its cwd is unreachable from its root (exec_process).
    Either create fails cleanly or the process runs inside; the canary never changes."""
    canary = Canary(tmp_path)
    bundle.config["process"]["cwd"] = cwd
    bundle.set_args("sh", "-c", "pwd; touch escaped-marker; mkdir -p escaped-dir")
    escapes = [Path(d) / n for d in ("/", "/sys/fs/cgroup")
               for n in ("escaped-marker", "escaped-dir")]
    try:
        p = leak_fds(host_leaks(tmp_path, canary), runp.cmd("run", "-b", str(bundle.path), cid))
        out = p.stdout.decode()
        if p.returncode == 0:
            assert out.startswith("/") and "unreachable" not in out, out
        canary.check()
        assert not [e for e in escapes if os.path.lexists(e)], "escaped to the host"
    finally:
        for e in escapes:
            if e.is_dir():
                e.rmdir()
            elif os.path.lexists(e):
                e.unlink()


@pytest.mark.parametrize("cwd", ["/proc/self/fd/3", "/proc/self/fd/3/sub",
                                 "/proc/self/fd/3/new/dir"])
def test_cwd_through_a_preserved_host_fd_is_refused(runp, bundle, cid, tmp_path, cwd):
    """Attack: a preserved fd (--preserve-fds 1) is a host directory and process.cwd points
    through it; runp would create the missing part of the cwd on the host, then start the
    process there, outside its root.
    Defence: init._make_cwd resolves the cwd in the rootfs without magic links, and
    exec_process checks getcwd() after chdir (runc 1.1.12's check).
    Verified: with os.makedirs (no RESOLVE_IN_ROOT) the "new/dir" case creates
    host-canary/new/dir; without the getcwd() check the process runs in the canary and
    writes escaped-marker there."""
    canary = Canary(tmp_path)
    bundle.config["process"]["cwd"] = cwd
    bundle.set_args("sh", "-c", "pwd; touch escaped-marker")
    p = leak_fds([(3, "dir", str(canary.dir))],
                 runp.cmd("run", "--preserve-fds", "1", "-b", str(bundle.path), cid))
    assert p.returncode != 0, p.stdout
    assert b"escaped" not in p.stdout
    canary.check()


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_cwd_through_a_symlink_resolves_inside(runp, bundle, cid, tmp_path, link):
    """Attack: process.cwd goes through a rootfs symlink to a host path (absolute, or ../../
    relative); the missing rest of the cwd would be created there, and the process started
    there. Defence: the cwd is created and entered after pivot_root, resolved in the rootfs.
    The process runs in the rootfs' copy of that path and the canary stays unchanged."""
    canary = Canary(tmp_path)
    target = str(canary.dir) if link == "absolute" else canary.rel("/evil")
    (bundle.rootfs / "evil").symlink_to(target)
    bundle.config["process"]["cwd"] = "/evil/sub/new"
    code, out, err = run(runp, bundle, cid, "sh", "-c", "pwd; touch inside-marker")
    assert code == 0, err
    assert out.strip() == f"{canary.dir}/sub/new"  # getcwd(): the link resolved in the root
    assert (bundle.rootfs / str(canary.dir).lstrip("/") / "sub" / "new" / "inside-marker").exists()
    canary.check()


# --- CVE-2021-30465, CVE-2025-31133/52565/52881: symlinks in the rootfs -----------------------------

def _mount_dest(bundle, canary, kind):
    link = str(canary.dir) if kind == "abs" else canary.rel("/mnt")
    (bundle.rootfs / "mnt").rmdir() if (bundle.rootfs / "mnt").is_dir() else None
    (bundle.rootfs / "mnt").symlink_to(link)
    bundle.config["mounts"].append({"destination": "/mnt/sub/new", "type": "tmpfs",
                                    "source": "tmpfs", "options": ["size=1m"]})
    return "echo $(stat -f -c %T /mnt/sub/new)-inside; touch /mnt/sub/new/x"


def _bind_file_dest(bundle, canary, kind):
    src = bundle.path / "hosts-src"
    src.write_text("bound content\n")
    link = str(canary.missing) if kind == "abs" else canary.rel("/etc") + "/must-not-appear"
    (bundle.rootfs / "etc" / "hosts").symlink_to(link)
    bundle.config["mounts"].append({"destination": "/etc/hosts", "type": "bind",
                                    "source": str(src), "options": ["rbind", "ro"]})
    return "cat /etc/hosts"


def _bind_dir_dest(bundle, canary, kind):
    src = bundle.path / "volume"
    src.mkdir()
    (src / "vol-file").write_text("volume\n")
    link = str(canary.dir / "sub") if kind == "abs" else canary.rel("/") + "/sub"
    (bundle.rootfs / "data").symlink_to(link)
    bundle.config["mounts"].append({"destination": "/data/deeper", "type": "bind",
                                    "source": str(src), "options": ["rbind", "rw"]})
    return "cat /data/deeper/vol-file"


def _dev_dir(bundle, canary, kind):
    shutil.rmtree(bundle.rootfs / "dev")
    (bundle.rootfs / "dev").symlink_to(str(canary.dir) if kind == "abs" else canary.rel("/dev"))
    bundle.config["linux"]["devices"] = [{"path": "/dev/extra", "type": "c", "major": 1,
                                          "minor": 5, "fileMode": 0o666}]
    return "echo x > /dev/null && head -c 3 /dev/extra | wc -c"


def _device_path(bundle, canary, kind):
    # no /dev tmpfs: the devices go into the image's own /dev, where "evil" leads out
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/dev"
                               and not m["destination"].startswith("/dev/")]
    link = str(canary.dir) if kind == "abs" else canary.rel("/dev")
    (bundle.rootfs / "dev" / "evil").symlink_to(link)
    bundle.config["linux"]["devices"] = [{"path": "/dev/evil/sub/zero2", "type": "c",
                                          "major": 1, "minor": 5}]
    return "head -c 2 /dev/evil/sub/zero2 | wc -c"


def _masked_path(bundle, canary, kind):
    link = str(canary.file) if kind == "abs" else canary.rel("/") + "/file"
    (bundle.rootfs / "evil-mask").symlink_to(link)
    inside = bundle.rootfs / str(canary.file).lstrip("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_text("inside copy\n")
    bundle.config["linux"]["maskedPaths"].append("/evil-mask")
    return "echo masked:$(cat /evil-mask); echo y > /evil-mask"


def _readonly_path(bundle, canary, kind):
    link = str(canary.dir) if kind == "abs" else canary.rel("/")
    (bundle.rootfs / "evil-ro").symlink_to(link)
    (bundle.rootfs / str(canary.dir).lstrip("/")).mkdir(parents=True, exist_ok=True)
    bundle.config["linux"]["readonlyPaths"].append("/evil-ro")
    return "touch /evil-ro/x 2>/dev/null && echo WRITABLE; echo done"


def _proc_dir(bundle, canary, kind):
    shutil.rmtree(bundle.rootfs / "proc")
    (bundle.rootfs / "proc").symlink_to(str(canary.dir) if kind == "abs" else canary.rel("/proc"))
    return "cat /proc/self/comm"


def _sys_dir(bundle, canary, kind):
    shutil.rmtree(bundle.rootfs / "sys")
    (bundle.rootfs / "sys").symlink_to(str(canary.dir) if kind == "abs" else canary.rel("/sys"))
    return "ls /sys"


def _sysctl_file(bundle, canary, kind):
    # no procfs in the container: /proc/sys/... is whatever the image has
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "proc"]
    bundle.config["linux"]["maskedPaths"] = []
    bundle.config["linux"]["readonlyPaths"] = []
    d = bundle.rootfs / "proc" / "sys" / "net" / "ipv4"
    d.mkdir(parents=True)
    (d / "ip_forward").symlink_to(str(canary.file) if kind == "abs"
                                  else canary.rel("/proc/sys/net/ipv4") + "/file")
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    return "true"


def _sysctl_dir(bundle, canary, kind):
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "proc"]
    bundle.config["linux"]["maskedPaths"] = []
    bundle.config["linux"]["readonlyPaths"] = []
    (bundle.rootfs / "proc" / "sys").symlink_to(str(canary.dir) if kind == "abs"
                                                else canary.rel("/proc"))
    inside = bundle.rootfs / str(canary.dir).lstrip("/") / "kernel"
    inside.mkdir(parents=True)
    (inside / "domainname").write_text("old\n")
    bundle.config["linux"]["sysctl"] = {"kernel.domainname": "evil"}
    return "true"


ROOTFS_ATTACKS = {
    "mount-destination": _mount_dest, "bind-file-destination": _bind_file_dest,
    "bind-dir-destination": _bind_dir_dest, "dev-dir": _dev_dir, "device-path": _device_path,
    "masked-path": _masked_path, "readonly-path": _readonly_path, "proc-dir": _proc_dir,
    "sys-dir": _sys_dir, "sysctl-file": _sysctl_file, "sysctl-dir": _sysctl_dir,
}
# what the container must print when runp accepts the rootfs (None: create must fail)
EXPECTED = {
    "mount-destination": "tmpfs-inside\n", "bind-file-destination": "bound content\n",
    "bind-dir-destination": "volume\n", "dev-dir": "3\n", "device-path": "2\n",
    "masked-path": "masked:\n", "readonly-path": "done\n", "proc-dir": None, "sys-dir": None,
    # sysctls go below runp's own procfs (linux/procfs.py): the image's /proc/sys is never used
    "sysctl-file": "", "sysctl-dir": "",
}


@pytest.mark.parametrize("kind", ["abs", "rel"])
@pytest.mark.parametrize("attack", list(ROOTFS_ATTACKS))
def test_rootfs_symlinks_cannot_reach_the_host(runp, bundle, cid, tmp_path, attack, kind):
    """Attack: the rootfs has a symlink (absolute, or ../../ relative) pointing at a host
    canary where runp will create, mount or write something: a mount destination (tmpfs, file
    and directory binds), /dev itself, a linux.devices path, a masked path, a read-only path,
    /proc and /sys themselves, a sysctl file or its directory (with no procfs over them).
    Defence: every path in the rootfs is resolved with openat2(RESOLVE_IN_ROOT) and used
    through the fd (paths.py, mounts.py); masked/read-only paths, sysctls and the cwd are
    handled after pivot_root; procfs and sysfs must go on real directories; sysctls are
    written below a procfs of runp's own (linux/procfs.py), never through the container's
    /proc (before that, to files verified to be on procfs: create failed).
    Verified: with paths.open_in_root/mkdir_all resolving "<rootfs>/<path>" on the host
    instead of with RESOLVE_IN_ROOT, the mount-destination, bind-dir-destination, absolute
    bind-file-destination and device-path cases change the canary (directories, files or
    device nodes appear on the host) and dev-dir / relative bind-file end in a broken
    create; without the ordinary-directory check for procfs/sysfs (mounts.py) the proc-dir
    and sys-dir cases are accepted."""
    canary = Canary(tmp_path)
    script = ROOTFS_ATTACKS[attack](bundle, canary, kind)
    bundle.config["process"]["args"] = ["sh", "-c", script]
    bundle.write()
    runp("create", "-b", str(bundle.path), cid, check=False)
    try:
        canary.check()  # while the container exists (created: all mounts are in place)
    finally:
        runp("delete", "--force", cid)
    code, out, err = run(runp, bundle, cid)
    canary.check()
    want = EXPECTED[attack]
    if want is None:
        assert code != 0, (out, err)
        assert "config.json" in err or "proc" in err, err
    elif attack == "device-path" and "nodev" in mounted_with(bundle.rootfs):
        # the node is made inside the rootfs all the same, but a nodev mount forbids opening it
        assert code == 0 and out == "0\n" and "Permission denied" in err, (code, out, err)
    else:
        assert code == 0 and out == want, (code, out, err)
    assert not host_mounts(cid)


def test_dev_console_symlink_is_replaced(runp, bundle, cid, tmp_path):
    """Attack (CVE-2025-52565 class): the image's /dev/console is a symlink to a host path
    (and there is no /dev tmpfs over it), so that binding the pty onto /dev/console lands
    elsewhere. Defence: /dev/console is set up after pivot_root, resolved in the rootfs, and a
    /dev/console that is not a regular file is replaced by one before the bind (runc 1.2.8).
    Verified: without the replacement /dev/console stays a symlink (into the rootfs)."""
    canary = Canary(tmp_path)
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/dev"]
    (bundle.rootfs / "dev" / "console").symlink_to(str(canary.file))
    inside = bundle.rootfs / str(canary.file).lstrip("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_text("inside\n")
    bundle.config["process"]["terminal"] = True
    code, out, err = run(runp, bundle, cid, "sh", "-c",
                         "stat -c '%F %t' /dev/console; readlink /dev/console || echo no-link")
    assert code == 0, err
    lines = out.replace("\r", "").split("\n")
    assert lines[:2] == ["character special file 88", "no-link"], out
    assert inside.read_text() == "inside\n"
    canary.check()


def test_mask_source_must_be_the_real_dev_null(runp, bundle, cid, tmp_path):
    """Attack (CVE-2025-31133 class): /dev comes from a directory the attacker fills (here a
    volume bound at /dev), whose "null" is a symlink to a file of its choice; masking a path
    by binding "/dev/null" over it would expose (read-write) that file instead of nothing.
    Defence: the mask source is opened in the rootfs without following symlinks and must be
    a character device 1:3; otherwise create fails.
    Verified: without the check /masked-file shows the attacker's file."""
    evil = bundle.path / "evil-dev"
    evil.mkdir()
    (evil / "null").symlink_to("/attacker-file")
    (bundle.rootfs / "attacker-file").write_text("ATTACKER\n")
    (bundle.rootfs / "masked-file").write_text("secret\n")
    cfg = bundle.config
    cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]
    cfg["mounts"].append({"destination": "/dev", "type": "bind", "source": str(evil),
                          "options": ["rbind", "rw"]})
    cfg["linux"]["maskedPaths"] = ["/masked-file"]
    code, out, err = run(runp, bundle, cid, "cat", "/masked-file")
    assert "ATTACKER" not in out and "secret" not in out
    assert code != 0 and "/dev/null" in err, (code, out, err)


def test_non_namespaced_sysctl_is_refused(runp, bundle, cid):
    """Attack: a sysctl that is not namespaced (here kernel.printk_ratelimit_burst; the real
    prize is kernel.core_pattern) written from the container's procfs changes the HOST.
    Defence: like runc, only sysctls of a namespace the container owns are accepted (ipc:
    kernel.msg*/sem/shm*/fs.mqueue.*, net.* with a new network namespace, kernel.domainname
    with a new uts namespace); anything else fails create before anything is built.
    Verified: without the check the host's value changes (restored by the test)."""
    path = Path("/proc/sys/kernel/printk_ratelimit_burst")
    before = path.read_text()
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    forward_before = forward.read_text()
    try:
        swappiness = Path("/proc/sys/vm/swappiness").read_text().strip()
        for key, value in (("kernel.printk_ratelimit_burst", str(int(before) + 1)),
                           ("kernel/printk_ratelimit_burst", str(int(before) + 2)),
                           ("vm.swappiness", swappiness)):
            bundle.config["linux"]["sysctl"] = {key: value}
            code, _, err = run(runp, bundle, cid, "true")
            assert code != 0 and "sysctl" in err, (key, err)
            assert path.read_text() == before
        lx = bundle.config["linux"]
        lx["namespaces"] = [ns for ns in lx["namespaces"] if ns["type"] != "network"]
        lx["sysctl"] = {"net.ipv4.ip_forward": forward_before.strip()}  # the host's netns
        code, _, err = run(runp, bundle, cid, "true")
        assert code != 0 and "sysctl" in err, err
    finally:
        path.write_text(before)
        forward.write_text(forward_before)


def test_namespaced_sysctls_still_work(runp, bundle, cid):
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789",
                                        "kernel.domainname": "example.org",
                                        "fs.mqueue.msg_max": "20"}
    code, out, err = run(runp, bundle, cid, "sh", "-c",
                         "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax "
                         "/proc/sys/kernel/domainname /proc/sys/fs/mqueue/msg_max")
    assert code == 0, err
    assert out.split() == ["1", "123456789", "example.org", "20"]


# --- a failed create leaves nothing behind -----------------------------------------------------------

def _cgroup_dirs(cid: str) -> list[str]:
    found = []
    for top in os.listdir("/sys/fs/cgroup"):
        for dirpath, dirnames, _ in os.walk(f"/sys/fs/cgroup/{top}"):
            found += [os.path.join(dirpath, d) for d in dirnames if cid in d]
    return found


def _processes(*needles: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat_ = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat_[stat_.rfind(")") + 2] != "Z" and any(n in cmd for n in needles):
            out.append(f"{pid}: {cmd}")
    return out


def _fail_namespace_path(b, tmp):
    b.config["linux"]["namespaces"].append({"type": "user", "path": "/proc/self/ns/nope"})


def _fail_idmap(b, tmp):
    lx = b.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10},
                         {"containerID": 5, "hostID": 200000, "size": 10}]  # overlapping
    lx["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]


def _fail_mount(b, tmp):
    b.config["mounts"].append({"destination": "/mnt/ok", "type": "tmpfs", "source": "tmpfs"})
    b.config["mounts"].append({"destination": "/mnt/bad", "type": "nosuchfs", "source": "x"})


def _fail_bind_source(b, tmp):
    b.config["mounts"].append({"destination": "/mnt", "type": "bind",
                               "source": str(tmp / "no-such-source"), "options": ["rbind"]})


def _fail_device(b, tmp):
    d = b.rootfs / "dev" / "occupied"
    d.mkdir(parents=True)
    (d / "f").write_text("x")
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] != "/dev"
                          and not m["destination"].startswith("/dev/")]
    b.config["linux"]["devices"] = [{"path": "/dev/occupied", "type": "c", "major": 1,
                                     "minor": 3}]


def _fail_sysctl(b, tmp):
    b.config["linux"]["sysctl"] = {"net.ipv4.no_such_key": "1"}


def _fail_sysctl_host(b, tmp):
    # not namespaced (the real prize would be kernel.core_pattern); the current value, so
    # that even a runp that wrongly writes it changes nothing
    value = Path("/proc/sys/kernel/printk_ratelimit_burst").read_text().strip()
    b.config["linux"]["sysctl"] = {"kernel.printk_ratelimit_burst": value}


def _fail_hostname(b, tmp):
    lx = b.config["linux"]
    lx["namespaces"] = [ns for ns in lx["namespaces"] if ns["type"] != "uts"]
    b.config["hostname"] = "no-uts"


def _fail_cwd(b, tmp):
    (b.rootfs / "afile").write_text("x")
    b.config["process"]["cwd"] = "/afile/sub"


def _fail_rlimit(b, tmp):
    b.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1 << 22,
                                       "hard": 1 << 22}]


def _fail_seccomp_invalid(b, tmp):
    b.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOPE"}


def _fail_seccomp_listener(b, tmp):
    b.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                    "listenerPath": str(tmp / "no-agent.sock"),
                                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}


def _fail_binary(b, tmp):
    b.config["process"]["args"] = ["/no/such/binary"]


def _fail_prestart(b, tmp):
    b.config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}


def _fail_create_container_hook(b, tmp):
    b.config["hooks"] = {"createContainer": [{"path": "/bin/false", "args": ["false"]}]}


def _fail_cgroup(b, tmp):
    b.config["linux"]["resources"]["cpu"] = {"cpus": "9999"}


def _fail_caps(b, tmp):
    # checked by the init before "go" (a capability it cannot grant is only a warning)
    b.config["process"]["capabilities"] = {"bounding": ["CAP_CHOWN", 24]}


def _fail_readonly_rootfs_mount(b, tmp):
    b.config["root"]["readonly"] = True
    b.config["mounts"].append({"destination": "/newdir/x", "type": "tmpfs", "source": "tmpfs"})
    b.config["mounts"].append({"destination": "/mnt", "type": "nosuchfs", "source": "x"})


CREATE_FAILURES = {
    "namespace-path": _fail_namespace_path, "idmap": _fail_idmap, "mount": _fail_mount,
    "bind-source": _fail_bind_source, "device": _fail_device, "sysctl": _fail_sysctl,
    "sysctl-host": _fail_sysctl_host, "hostname-without-uts": _fail_hostname, "cwd": _fail_cwd,
    "rlimit": _fail_rlimit, "seccomp-invalid": _fail_seccomp_invalid,
    "seccomp-listener": _fail_seccomp_listener, "missing-binary": _fail_binary,
    "prestart-hook": _fail_prestart, "createContainer-hook": _fail_create_container_hook,
    "cgroup-value": _fail_cgroup, "capability": _fail_caps,
    "late-mount-after-others": _fail_readonly_rootfs_mount,
}


@pytest.mark.parametrize("step", list(CREATE_FAILURES))
def test_failed_create_leaves_nothing(runp, bundle, cid, tmp_path, step):
    """Each setup step is made to fail in turn. Afterwards there must be no state dir, no
    cgroup directory named after the container in any hierarchy, no mount of the bundle or
    the container on the host, and no process (the init, stage 1, a hook) still alive.
    Defence: runtime.create.Creator.cleanup (kills stage 1 and the init, removes the cgroup and the state
    dir); everything mounted lives in the init's own mount namespace."""
    mounts_before = host_mounts(bundle.path, cid)
    CREATE_FAILURES[step](bundle, tmp_path)
    bundle.write()
    p = runp("create", "-b", str(bundle.path), "--pid-file", str(tmp_path / "pid"), cid,
             check=False)
    assert p.returncode != 0, f"{step}: create succeeded"
    assert p.stderr.strip(), "no error message"
    assert not (runp.root / cid).exists(), "state dir left"
    assert cid not in runp.ids()
    assert not (tmp_path / "pid").exists(), "pid file written"
    assert _cgroup_dirs(cid) == [], "cgroup left"
    assert host_mounts(bundle.path, cid) == mounts_before, "mount left"
    wait_for(lambda: not _processes(cid, str(bundle.path)), timeout=5,
             what=f"processes to go: {_processes(cid, str(bundle.path))}")


def test_failed_pid_file_leaves_nothing(runp, bundle, cid, tmp_path):
    """The very last step (writing --pid-file) fails: everything built so far goes away."""
    bundle.set_args("sleep", "100")
    p = runp("create", "-b", str(bundle.path), "--pid-file", str(tmp_path / "no" / "dir" / "pid"),
             cid, check=False)
    assert p.returncode != 0
    assert not (runp.root / cid).exists() and _cgroup_dirs(cid) == []
    wait_for(lambda: not _processes(cid, str(bundle.path)), timeout=5, what="processes to go")


def test_missing_cwd_is_created_not_an_error(runp, bundle, cid):
    """runc creates a missing process.cwd (inside the rootfs, owned by root)."""
    bundle.config["process"]["cwd"] = "/does/not/exist"
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    code, out, err = run(runp, bundle, cid, "pwd")
    assert code == 0 and out == "/does/not/exist\n", err
    assert (bundle.rootfs / "does" / "not" / "exist").is_dir()
