"""Terminals: the container's pty, the --console-socket protocol, and the foreground proxy.

The pty is allocated inside the container (its /dev/pts after pivot_root), so the container
owns it; the master goes to the caller over the console socket in one SCM_RIGHTS message whose
payload is the pty's name, as runc does. The slave is reached with TIOCGPTPEER (no path lookup
a container could redirect) and bound onto /dev/console.
"""
from __future__ import annotations

import fcntl
import os
import struct

import _socket  # the socket module costs milliseconds (enum, selectors)

from .linux import fdpass
from .linux.arch import IOCTL  # the TIOC* numbers differ on powerpc and mips


def channel(console_socket: str | None) -> tuple[int, object]:
    """Where the container's pty master is sent: a connection to --console-socket, or (runp
    in the foreground) one end of a socketpair, whose other end is returned for us to read."""
    if console_socket:
        s = _socket.socket(fdpass.AF_UNIX, fdpass.SOCK_STREAM | fdpass.SOCK_CLOEXEC)
        try:
            s.connect(console_socket)
        except OSError as e:
            s.close()
            from .errors import RuntimeFailure
            raise RuntimeFailure(f"console socket {console_socket}: {e.strerror}") from None
        return s.detach(), None
    ours, theirs = fdpass.socketpair(fdpass.SOCK_STREAM)
    return theirs.detach(), ours


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, IOCTL["TIOCSWINSZ"], struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int] | None:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, IOCTL["TIOCGWINSZ"], b"\0" * 8))
        return rows, cols
    except OSError:
        return None


def open_pty(ptmx: str = "/dev/ptmx") -> tuple[int, int, str]:
    """(master, slave, slave name) from `ptmx`."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, IOCTL["TIOCSPTLCK"], struct.pack("i", 0))
        n = struct.unpack("I", fcntl.ioctl(master, IOCTL["TIOCGPTN"], b"\0" * 4))[0]
        slave = fcntl.ioctl(master, IOCTL["TIOCGPTPEER"], os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave, f"/dev/pts/{n}"


def setup_in_container(rootfs, console_fd: int, size: tuple[int, int] | None) -> int:
    """In the init after pivot_root: make the pty, bind /dev/console, send the master away.
    Returns the slave fd, which becomes the process's stdio."""
    from .errors import RuntimeFailure
    if console_fd < 0:
        raise RuntimeFailure("process.terminal is true but no console socket was given "
                             "(use --console-socket, or run in the foreground)")
    master, slave, name = open_pty()
    try:
        if size:
            set_size(master, size[0], size[1])
        if rootfs is not None:
            rootfs.setup_console(slave)
        sock = _socket.socket(fileno=console_fd)
        try:
            fdpass.send_fds(sock, name.encode(), [master])
        finally:
            sock.close()
    except BaseException:
        os.close(slave)
        raise
    finally:
        os.close(master)
    return slave


def recv_master(sock) -> tuple[int, str]:
    """The pty master (and its name) a container process sent over `sock`."""
    msg, fds = fdpass.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("console socket: no file descriptor received")
    return fds[0], msg.decode(errors="replace")


class Proxy:
    """Copy between the caller's stdio and the pty master; raw mode while it runs."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.saved = None
        self.tty = os.isatty(0)

    def __enter__(self) -> "Proxy":
        if self.tty:
            import termios
            import tty
            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
            self.resize()
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)

    def resize(self) -> None:
        if self.tty:
            sz = get_size(0)
            if sz:
                set_size(self.master, *sz)

    def pump(self, done) -> None:
        """Copy until the master hangs up and `done()` is true."""
        import select
        fds = [self.master, 0]
        stdin_open = True
        while True:
            try:
                r, _, _ = select.select(fds if stdin_open else [self.master], [], [], 0.2)
            except InterruptedError:
                continue
            if self.master in r:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return
                _write_all(1, data)
            if stdin_open and 0 in r:
                data = os.read(0, 65536)
                if not data:
                    stdin_open = False
                else:
                    _write_all(self.master, data)
            if not r and done():
                return


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
