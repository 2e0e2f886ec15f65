"""--pidfd-socket (runc 1.2, on create, run and exec): hand the caller a pidfd of the container's
process over an AF_UNIX socket, so it can wait for and signal that very process without the
races of a pid (containerd's shim uses it where the kernel has pidfds).

runc's init opens the pidfd of itself and sends it with SCM_RIGHTS, the payload naming the kind
of process ("standard" for a container's init, "setns" for an exec'd one). runp sends the same
message from the parent side, right after the process is set up: pidfd_open(2) of a pid we see
refers to the same process, and the init stays free of one more socket to carry.
"""
from __future__ import annotations

import os

import _socket

from .errors import RuntimeFailure
from .linux import fdpass

INIT, EXEC = "standard", "setns"  # the payloads runc sends


def send(path: str, pid: int, kind: str) -> None:
    """Connect to `path` and send a pidfd of `pid` with `kind` as the message."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        raise RuntimeFailure(f"--pidfd-socket {path}: pidfd_open {pid}: {e.strerror}") from None
    s = _socket.socket(fdpass.AF_UNIX, fdpass.SOCK_STREAM | fdpass.SOCK_CLOEXEC)
    try:
        s.connect(path)
        fdpass.send_fds(s, kind.encode(), [pidfd])
    except OSError as e:
        raise RuntimeFailure(f"--pidfd-socket {path}: {e.strerror or e}") from None
    finally:
        s.close()
        os.close(pidfd)
