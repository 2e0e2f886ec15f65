"""Terminals: an interactive busybox shell driven through a pty, received over --console-socket
(create and exec) or proxied by runp in the foreground (run and exec under a pty of ours)."""
from __future__ import annotations

import fcntl
import os
import re
import select
import socket
import struct
import subprocess
import termios
import time

import pytest

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
