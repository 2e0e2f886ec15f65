"""/proc/<pid>/mountinfo as records: the one view of a mount namespace with ids and parents.

Paths in it are relative to the reader's root (mounts it cannot reach are left out), and a
path may name several mounts: those stacked on each other, and in a --no-pivot namespace the
container's mounts and the host's ones under it. Ids and parent ids tell them apart.
"""
from __future__ import annotations

import os  # (nothing else: cgroups/common.py, on the path of delete and ps, uses unescape)


class MountEntry:
    __slots__ = ("id", "parent", "root", "mountpoint", "fstype", "shared")

    def __init__(self, id: int, parent: int, root: str, mountpoint: str, fstype: str,
                 shared: bool) -> None:
        self.id = id
        self.parent = parent
        self.root = root  # the directory of its filesystem this mount shows ("/": all of it)
        self.mountpoint = mountpoint
        self.fstype = fstype
        self.shared = shared  # in a peer group: mount events on it propagate to its peers


def unescape(s: str) -> str:
    """The kernel writes space, tab, newline and backslash in paths as \\ooo octal escapes."""
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 4].isdigit() and len(s[i + 1:i + 4]) == 3:
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse(text: str) -> list[MountEntry]:
    out = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        f = pre.split(" ")
        out.append(MountEntry(int(f[0]), int(f[1]), unescape(f[3]), unescape(f[4]),
                              post.split(" ", 1)[0], any(o.startswith("shared:") for o in f[6:])))
    return out


def read(proc: int) -> list[MountEntry]:
    """Our own mountinfo, through `proc`, an fd of a procfs root (it may be detached: the
    fd keeps it usable)."""
    fd = os.open("self/mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    # surrogateescape: a path need not be UTF-8, and must survive the round trip to open()
    return parse(b"".join(chunks).decode("utf-8", "surrogateescape"))


def mount_id(proc: int, fd: int) -> int:
    """The id of the mount `fd` is on (the "mnt_id:" line of its fdinfo)."""
    info = os.open(f"self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
    try:
        text = os.read(info, 4096).decode()
    finally:
        os.close(info)
    for line in text.splitlines():
        if line.startswith("mnt_id:"):
            return int(line.split()[1])
    raise OSError(f"no mnt_id in fdinfo of fd {fd}")
