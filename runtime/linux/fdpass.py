"""AF_UNIX sockets and SCM_RIGHTS on the C module alone.

The socket module imports selectors, enum and collections (about 3 ms on every create); the
init pipe needs only a socketpair and fd passing, which _socket and struct provide.
"""
from __future__ import annotations

import struct

import _socket

AF_UNIX = _socket.AF_UNIX
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_SEQPACKET = _socket.SOCK_SEQPACKET
SOCK_CLOEXEC = _socket.SOCK_CLOEXEC


def socketpair(kind: int = SOCK_SEQPACKET):
    """Two connected AF_UNIX sockets (close-on-exec, as Python makes every fd)."""
    return _socket.socketpair(AF_UNIX, kind | SOCK_CLOEXEC)


def send_fds(sock, data: bytes, fds: list[int]) -> None:
    anc = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
    sock.sendmsg([data], anc)


def recv_fds(sock, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it, close-on-exec as every fd we open (an fd
    received without it would outlive the container's exec: CVE-2024-21626)."""
    data, anc, _flags, _addr = sock.recvmsg(bufsize, _socket.CMSG_SPACE(maxfds * 4),
                                            _socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            n = len(payload) // 4
            fds.extend(struct.unpack(f"{n}i", payload[:n * 4]))
    return data, fds
