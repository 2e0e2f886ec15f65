"""Terminals: an interactive busybox shell driven through a pty, received over --console-socket
(create and exec) or proxied by runp in the foreground (run and exec under a pty of ours)."""
from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import termios
import time

import pytest

from conftest import force_delete, make_traversable, new_id

RUNC = shutil.which("runc")

PROMPT = re.compile(rb"[#$] $")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")  # busybox's line editing asks for the cursor position


class Term:
    """The master side of a pty: write keystrokes, wait for output."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, pattern: bytes | re.Pattern, timeout: float = 10.0) -> bytes:
        """Read until `pattern` shows up; return everything up to and including it."""
        rx = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                got, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {rx.pattern!r}; got {self.buf!r}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the other side is gone
                    data = b""
                if not data:
                    raise AssertionError(f"pty closed waiting for {rx.pattern!r}; got {self.buf!r}")
                self.buf = ANSI.sub(b"", self.buf + data)

    def run(self, command: str, timeout: float = 10.0) -> str:
        """Type a command, return its output (without the echoed command and the prompt)."""
        marker = f"@@{time.monotonic_ns()}@@"
        self.send(f"{command}; echo {marker[:2]}''{marker[2:]}\n".encode())
        got = self.expect(marker.encode() + b"\r\n", timeout)
        self.expect(PROMPT, timeout)
        text = got.decode(errors="replace").replace("\r\n", "\n")
        # drop the echo of the command line itself
        return text.split("\n", 1)[1].rsplit(marker, 1)[0] if "\n" in text else ""

    def close(self) -> None:
        os.close(self.fd)


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class ConsoleReceiver:
    """A --console-socket listener, as containerd's shim or conmon would have."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(30)

    def receive(self) -> tuple[Term, str]:
        conn, _ = self.sock.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        assert len(fds) == 1, "exactly one fd"
        return Term(fds[0]), msg.decode()

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture
def tty_bundle(bundle):
    """The busybox bundle with the tty applets and an interactive shell as its process."""
    for applet in ("tty", "stty", "sleep", "jobs"):
        link = bundle.rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["env"].append("PS1=# ")
    bundle.set_args("sh")
    return bundle


@pytest.fixture
def receiver(tmp_path):
    r = ConsoleReceiver(str(tmp_path / "console.sock"))
    yield r
    r.close()


def check_shell(t: Term, ctty: str) -> None:
    """What an interactive shell on a terminal needs: a controlling tty, job control,
    signals from the keyboard, resizing."""
    assert re.fullmatch(ctty, t.run("tty").strip()), t.run("tty")
    assert t.run("echo hello") == "hello\n"
    set_size(t.fd, 40, 132)  # the kernel sends SIGWINCH to the foreground job
    assert t.run("stty size").strip() == "40 132"
    # ^C reaches the foreground job only: the shell survives it
    t.send(b"sleep 100\n")
    time.sleep(0.3)
    t.send(b"\x03")
    t.expect(PROMPT)
    assert t.run("echo $?").strip() == "130"
    # job control: no "job control turned off"; a background job shows up in jobs
    assert "Running" in t.run("sleep 100 & jobs")
    t.run("kill %1")
    # the session's controlling terminal is this pty (stat: tty_nr != 0), and the foreground
    # process group is the command's own (tpgid == pgrp)
    stat = t.run("cat /proc/self/stat").split(") ", 1)[1].split()
    assert stat[4] != "0", stat  # tty_nr
    assert stat[5] == stat[2], stat  # tpgid == pgrp


# --- console socket ------------------------------------------------------------------------------

def test_console_socket_create(runp, tty_bundle, cid, receiver):
    tty_bundle.config["process"]["consoleSize"] = {"height": 33, "width": 101}
    tty_bundle.write()
    runp("create", "--console-socket", receiver.path, "-b", str(tty_bundle.path), cid)
    t, name = receiver.receive()
    try:
        assert name.startswith("/dev/"), name  # runp: the slave /dev/pts/N; runc: /dev/ptmx
        runp("start", cid)
        t.expect(PROMPT)
        assert t.run("stty size").strip() == "33 101"  # consoleSize
        # /dev/console is the pty's slave: same device as stdin
        assert t.run("stat -L -c %t:%T /dev/console") == t.run("stat -L -c %t:%T /proc/self/fd/0")
        check_shell(t, r"/dev/pts/\d+")  # as runc: the slave, also bound on /dev/console
        assert "job control turned off" not in t.buf.decode(errors="replace")
        t.send(b"exit 7\n")
        deadline = time.monotonic() + 10
        while runp.state(cid)["status"] != "stopped":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        t.close()
    runp("delete", cid)


def test_console_socket_exec(runp, tty_bundle, cid, receiver, tmp_path):
    tty_bundle.config["process"]["terminal"] = False
    tty_bundle.set_args("sleep", "1000")
    runp("run", "-d", "-b", str(tty_bundle.path), cid)
    pf = tmp_path / "exec.pid"
    runp("exec", "-t", "-d", "--console-socket", receiver.path, "--pid-file", str(pf),
         "-e", "PS1=# ", cid, "sh")
    t, name = receiver.receive()
    try:
        assert name.startswith("/dev/"), name  # runp: the slave /dev/pts/N; runc: /dev/ptmx
        t.expect(PROMPT)
        check_shell(t, r"/dev/pts/\d+")
        pid = int(pf.read_text())
        t.send(b"exit\n")
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and \
                open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        t.close()


def test_console_socket_rules(runp, tty_bundle, cid, receiver):
    p = runp("create", "-b", str(tty_bundle.path), cid, check=False)
    assert p.returncode != 0 and b"console socket" in p.stderr
    tty_bundle.config["process"]["terminal"] = False
    tty_bundle.set_args("sleep", "1000")
    runp("run", "-d", "-b", str(tty_bundle.path), cid)
    p = runp("exec", "-d", "-t", cid, "true", check=False)
    assert p.returncode != 0 and b"console socket" in p.stderr
    p = runp("exec", "--console-socket", receiver.path, cid, "true", check=False)
    assert p.returncode != 0 and b"console socket" in p.stderr


# --- foreground: runp proxies its own terminal ---------------------------------------------------

class Foreground:
    """runp started on a pty of ours (its controlling terminal), as in an interactive shell."""

    def __init__(self, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        master, slave = os.openpty()
        set_size(slave, rows, cols)
        self.slave = slave
        self.before = termios.tcgetattr(slave)

        def ctty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, preexec_fn=ctty)
        self.term = Term(master)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.term.close()
        os.close(self.slave)


def check_foreground(fg: Foreground, code: int = 5) -> None:
    t = fg.term
    t.expect(PROMPT)
    attrs = termios.tcgetattr(fg.slave)
    assert not attrs[3] & (termios.ICANON | termios.ECHO), "caller's tty not in raw mode"
    assert t.run("stty size").strip() == "30 100"  # the caller's size
    set_size(fg.slave, 50, 160)  # runp gets SIGWINCH and passes the size on
    deadline = time.monotonic() + 10
    while t.run("stty size").strip() != "50 160":
        assert time.monotonic() < deadline, "resize not forwarded"
        time.sleep(0.1)
    assert t.run("tty").strip().startswith("/dev/")
    t.send(b"sleep 100\n")
    time.sleep(0.3)
    t.send(b"\x03")  # raw mode: ^C is a byte for the container's tty, not a signal for runp
    t.expect(PROMPT)
    assert t.run("echo $?").strip() == "130"
    t.send(f"exit {code}\n".encode())
    assert fg.proc.wait(timeout=15) == code
    assert termios.tcgetattr(fg.slave) == fg.before, "caller's tty not restored"


def test_foreground_run(runp, tty_bundle, cid):
    fg = Foreground(runp.cmd("run", "-b", str(tty_bundle.path), cid), 30, 100)
    try:
        check_foreground(fg, 5)
    finally:
        fg.close()
    assert cid not in runp.ids()


def test_foreground_exec(runp, tty_bundle, cid):
    tty_bundle.config["process"]["terminal"] = False
    tty_bundle.set_args("sleep", "1000")
    runp("run", "-d", "-b", str(tty_bundle.path), cid)
    fg = Foreground(runp.cmd("exec", "-t", "-e", "PS1=# ", cid, "sh"), 30, 100)
    try:
        check_foreground(fg, 9)
    finally:
        fg.close()
    assert runp.state(cid)["status"] == "running"


def test_foreground_exec_without_tty_on_a_pty(runp, tty_bundle, cid):
    """No -t: the process uses runp's own stdio, which here is our pty."""
    tty_bundle.config["process"]["terminal"] = False
    tty_bundle.set_args("sleep", "1000")
    runp("run", "-d", "-b", str(tty_bundle.path), cid)
    fg = Foreground(runp.cmd("exec", cid, "sh", "-c", "echo out; exit 4"))
    try:
        fg.term.expect(b"out")
        assert fg.proc.wait(timeout=15) == 4
        assert termios.tcgetattr(fg.slave) == fg.before
    finally:
        fg.close()


def test_foreground_signal_when_not_a_tty(runp, tty_bundle, cid):
    """A terminal process with runp's stdin not a tty: no raw mode, the pty still proxied
    (runc refuses this: it opens /dev/tty)."""
    proc = subprocess.Popen(runp.cmd("run", "-b", str(tty_bundle.path), cid),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        outp, _ = proc.communicate(b"echo via-pty; exit 3\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3
    assert b"via-pty" in outp


# --- the process owns its stdio (runc's fixStdioPermissions) -------------------------------------
# runc chowns each of fds 0-2 that is not /dev/null to the process's uid before the switch,
# keeping the group (a pty's is the tty group, devpts gid=5): pty, pipe or file alike. Without
# it a non-root process cannot reopen its own terminal (tty, mesg, script) or /dev/stdout.

USER = {"uid": 1000, "gid": 1000}
USERNS = {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}
# the pty's owner, group and mode; then what only its owner may do: reopen it, chmod it (mesg)
PTY_CHECK = ("tty; stat -c '%u:%g %a' $(tty); "
             "echo reopened > $(tty) && chmod 600 $(tty) && stat -c %a $(tty)")
PTY_RESULT = "/dev/pts/0\n1000:5 620\nreopened\n600\n"
# each stdio fd's type and owner; then reopen stdout by path (appending: it may be a file)
STDIO_CHECK = ("for f in 0 1 2; do stat -L -c \"$f %F %u:%g\" /proc/self/fd/$f; done; "
               "echo reopened >> /dev/stdout")
STDIO_CHECK_01 = STDIO_CHECK.replace("0 1 2", "0 1")  # (fd 2: the host's /dev/null)


def runtimes(runp, tmp_path) -> dict[str, list[str]]:
    """The command prefix of each runtime to compare: runp, and runc where it is installed."""
    out = {"runp": runp.cmd()}
    if RUNC:
        out["runc"] = [RUNC, "--root", str(tmp_path / "runc-root")]
    return out


def drain(fd: int, timeout: float = 20) -> str:
    """Everything the pty shows until its last slave is closed (read gives EIO)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").replace("\r\n", "\n")


def user_bundle(bundle, userns: bool):
    bundle.config["process"]["user"] = dict(USER)
    if userns:
        make_traversable(bundle.rootfs)
        bundle.config["linux"]["namespaces"].append({"type": "user"})
        bundle.config["linux"].update(USERNS)
    return bundle


def pty_session(cmd: list[str], bundle, receiver) -> str:
    """create --console-socket, start, the pty's output until the process is gone; deleted."""
    cid = new_id()
    bundle.config["process"]["terminal"] = True
    bundle.set_args("sh", "-c", "stat -c '%u:%g %a' /dev/console; " + PTY_CHECK)
    try:
        subprocess.run(cmd + ["create", "--console-socket", receiver.path, "-b", str(bundle.path),
                              cid], check=True, capture_output=True, timeout=60)
        t, _ = receiver.receive()
        try:
            subprocess.run(cmd + ["start", cid], check=True, capture_output=True, timeout=60)
            return drain(t.fd)
        finally:
            t.close()
    finally:
        force_delete(cmd, cid)


@pytest.mark.parametrize("userns", [False, True], ids=["host-ids", "userns"])
def test_init_pty_belongs_to_the_user(runp, bundle, receiver, tmp_path, userns):
    """create with a terminal: the pty (and /dev/console, the same node) is the process's
    uid's, in the tty group, as with runc; in a user namespace too."""
    user_bundle(bundle, userns)
    out = {name: pty_session(cmd, bundle, receiver) for name, cmd in runtimes(runp, tmp_path).items()}
    assert out["runp"] == "1000:5 620\n" + PTY_RESULT, out
    if RUNC:
        assert out["runp"] == out["runc"]


@pytest.mark.parametrize("userns", [False, True], ids=["host-ids", "userns"])
def test_exec_stdio_belongs_to_the_user(runp, bundle, receiver, tmp_path, userns):
    """exec --user 1000: with -t the pty is the user's (tty group kept); without, the pipes
    (foreground) or the caller's file (--detach) are chowned to it, as runc does. In a user
    namespace a host file (its owner unmapped there) stays as it is: EPERM is no error. There
    runc's foreground pipes differ: they are runc's own, made for the container's root, where
    runp passes the caller's on (the host root's, which the user namespace cannot chown)."""
    user_bundle(bundle, userns)
    bundle.config["process"]["user"] = {"uid": 0, "gid": 0}
    bundle.set_args("sleep", "1000")
    out: dict[str, dict] = {}
    for name, cmd in runtimes(runp, tmp_path).items():
        cid = new_id()
        res = out[name] = {}
        try:
            with open(tmp_path / f"run-{name}.err", "w+") as err:  # (not a pipe: inherited)
                p = subprocess.run(cmd + ["run", "-d", "-b", str(bundle.path), cid],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err, timeout=60)
                err.seek(0)
                assert p.returncode == 0, (name, err.read())
            ex = cmd + ["exec", "--user", "1000:1000"]
            subprocess.run(ex + ["-t", "-d", "--console-socket", receiver.path, cid,
                                 "sh", "-c", PTY_CHECK], check=True, capture_output=True, timeout=60)
            t, _ = receiver.receive()
            try:
                res["tty"] = drain(t.fd)
            finally:
                t.close()
            p = subprocess.run(ex + [cid, "sh", "-c", STDIO_CHECK], stdin=subprocess.PIPE,
                               capture_output=True, timeout=60)
            res["pipes"] = (p.returncode, p.stdout.decode(), p.stderr.decode())
            f = tmp_path / f"exec-{name}.out"
            with open(f, "a") as fo:  # appending, as the reopened /dev/stdout does
                p = subprocess.run(ex + ["-d", cid, "sh", "-c", STDIO_CHECK + "; echo done"],
                                   stdin=subprocess.PIPE, stdout=fo, stderr=fo, timeout=60)
            assert p.returncode == 0
            deadline = time.monotonic() + 20
            while "done" not in f.read_text():
                assert time.monotonic() < deadline, f.read_text()
                time.sleep(0.05)
            res["file"] = (f.read_text(), f.stat().st_uid)
        finally:
            force_delete(cmd, cid)
    ours = out["runp"]
    assert ours["tty"] == PTY_RESULT, ours
    if userns:  # the pipes and the file are the host's (root's: unmapped, shown as 65534)
        assert ours["pipes"][1] == "0 fifo 65534:65534\n1 fifo 65534:65534\n2 fifo 65534:65534\n", ours
        assert ours["pipes"][2].startswith("sh: can't create /dev/stdout: Permission denied"), ours
        assert ours["file"][1] == 0, ours
    else:
        assert ours["pipes"] == (0, "0 fifo 1000:0\n1 fifo 1000:0\n2 fifo 1000:0\nreopened\n", ""), ours
        assert ours["file"] == ("0 fifo 1000:0\n1 regular file 1000:0\n2 regular file 1000:0\n"
                                "reopened\ndone\n", 1000), ours
    if RUNC:
        theirs = out["runc"]
        if userns:  # runc's foreground pipes are its own, made for the container's root
            assert theirs["pipes"][:2] == (0, "0 fifo 1000:0\n1 fifo 1000:0\n2 fifo 1000:0\n"
                                                "reopened\n"), theirs
            del ours["pipes"], theirs["pipes"]
        assert ours == theirs


@pytest.mark.parametrize("userns", [False, True], ids=["host-ids", "userns"])
def test_detached_init_stdio_belongs_to_the_user(runp, bundle, tmp_path, userns):
    """run --detach (create alike): the container inherits the caller's stdio and runc chowns
    it to the process's uid, a pipe and a file alike; /dev/null (stderr here) is left alone:
    the host_devices_untouched fixture fails the test if the host's was touched."""
    user_bundle(bundle, userns)
    bundle.set_args("sh", "-c", STDIO_CHECK_01 + "; echo done; exec 0<&- 1>&- 2>&-; sleep 1000")
    out = {}
    for name, cmd in runtimes(runp, tmp_path).items():
        cid = new_id()
        f = tmp_path / f"init-{name}.out"
        r, w = os.pipe()
        try:
            with open(f, "a") as fo:  # appending, as the reopened /dev/stdout does
                p = subprocess.run(cmd + ["run", "-d", "-b", str(bundle.path), cid], stdin=r,
                                   stdout=fo, stderr=subprocess.DEVNULL, timeout=60)
            assert p.returncode == 0
            deadline = time.monotonic() + 20
            while "done" not in f.read_text():
                assert time.monotonic() < deadline, f.read_text()
                time.sleep(0.05)
            out[name] = (f.read_text(), f.stat().st_uid, os.fstat(w).st_uid)
        finally:
            os.close(r)
            os.close(w)
            force_delete(cmd, cid)
    if userns:  # our pipe and file are the host root's: not mapped there, left as they are
        assert out["runp"] == ("0 fifo 65534:65534\n1 regular file 65534:65534\ndone\n", 0, 0), out
    else:
        assert out["runp"] == ("0 fifo 1000:0\n1 regular file 1000:0\nreopened\ndone\n",
                               1000, 1000), out
    if RUNC:
        assert out["runp"] == out["runc"]


def test_foreground_stdio_pipes_belong_to_the_user(runp, bundle, tmp_path):
    """runp run in the foreground without a terminal passes the caller's stdio on, where runc
    hands the process pipes of its own (owned by the process): a pipe of the caller's is
    chowned like runc's, the caller's file is left alone (runc never chowns it either)."""
    bundle.config["process"]["user"] = dict(USER)
    bundle.set_args("sh", "-c", STDIO_CHECK)
    f = tmp_path / "fg.out"
    with open(f, "w") as fo:
        p = subprocess.run(runp.cmd("run", "-b", str(bundle.path), new_id()),
                           stdin=subprocess.PIPE, stdout=fo, stderr=subprocess.PIPE, timeout=60)
    assert p.stderr == b"sh: can't create /dev/stdout: Permission denied\n"
    assert f.read_text() == "0 fifo 1000:0\n1 regular file 0:0\n2 fifo 1000:0\n"
    assert f.stat().st_uid == 0
    if RUNC:  # runc: its own pipes, and the caller's file untouched as well
        with open(f, "w") as fo:
            p = subprocess.run([RUNC, "--root", str(tmp_path / "runc-root"), "run", "-b",
                                str(bundle.path), new_id()], stdin=subprocess.PIPE, stdout=fo,
                               stderr=subprocess.PIPE, timeout=60)
        assert f.read_text() == "0 fifo 1000:0\n1 fifo 1000:0\n2 fifo 1000:0\nreopened\n"
        assert f.stat().st_uid == 0
