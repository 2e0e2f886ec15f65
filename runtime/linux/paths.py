"""Resolve paths inside the container rootfs without ever leaving it.

A rootfs is untrusted: any component of a mount destination, masked path or device path may be
a symlink pointing at the host ("../../../etc" or "/etc"). Every lookup here goes through
openat2(RESOLVE_IN_ROOT), so such a link is resolved as if the rootfs were "/", and the result
is an O_PATH fd. Callers operate through that fd (mount onto /proc/self/fd/N, fchmod, ...), so a
symlink swapped in after the check cannot redirect them either (CVE-2021-30465 and friends).
"""
from __future__ import annotations

import errno
import os
import stat

from . import sys as lsys

_IN_ROOT = lsys.RESOLVE_IN_ROOT | lsys.RESOLVE_NO_MAGICLINKS
O_PATH = 0o10000000


def open_in_root(rootfd: int, path: str, flags: int = O_PATH, mode: int = 0) -> int:
    """Open `path` (absolute or not) inside the tree of `rootfd`; links stay inside it."""
    return lsys.openat2(rootfd, path.lstrip("/") or ".", flags, _IN_ROOT, mode)


def fd_path(fd: int) -> str:
    """A path that refers to exactly the object behind `fd`, usable as a mount target/source."""
    return f"/proc/self/fd/{fd}"


MAX_SYMLINKS = 40


def mkdir_all(rootfd: int, path: str, mode: int = 0o755) -> int:
    """mkdir -p inside the rootfs; returns an O_PATH fd of the final directory.

    Each prefix is resolved afresh from the root with RESOLVE_IN_ROOT, so a symlink anywhere in
    the path is followed as the container would see it, and never out of the rootfs. A dangling
    symlink is followed too and its target created (inside the root), as runc's securejoin does;
    a /proc magic link fails (ELOOP).
    """
    todo = [p for p in path.split("/") if p and p != "."]
    done: list[str] = []
    fd = os.dup(rootfd)
    links = 0
    try:
        while todo:
            name = todo.pop(0)
            prefix = "/".join(done + [name])
            try:
                nfd = lsys.openat2(rootfd, prefix, O_PATH | os.O_DIRECTORY, _IN_ROOT)
            except FileNotFoundError:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    target = _link_target(fd, name)
                    if target is not None:  # dangling: create what it points to instead
                        links += 1
                        if links > MAX_SYMLINKS:
                            raise OSError(errno.ELOOP, "too many symbolic links", path) from None
                        if target.startswith("/"):
                            done = []
                            os.close(fd)
                            fd = os.dup(rootfd)
                        todo = [p for p in target.split("/") if p and p != "."] + todo
                        continue
                nfd = lsys.openat2(rootfd, prefix, O_PATH | os.O_DIRECTORY, _IN_ROOT)
            os.close(fd)
            fd = nfd
            done.append(name)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _link_target(dirfd: int, name: str) -> str | None:
    try:
        return os.readlink(name, dir_fd=dirfd)
    except OSError:
        return None


def create_file(rootfd: int, path: str, mode: int = 0o644) -> int:
    """Make sure a file (the mount point of a file bind) exists; returns its O_PATH fd.
    A dangling symlink in the last component is followed and its target created in the root."""
    for _ in range(MAX_SYMLINKS):
        parent, name = os.path.split(path.rstrip("/"))
        pfd = mkdir_all(rootfd, parent)
        try:
            try:
                fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, mode,
                             dir_fd=pfd)
                os.close(fd)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ELOOP, errno.EISDIR, errno.ETXTBSY,
                                   errno.EACCES, errno.ENXIO, errno.EROFS):
                    raise
            try:
                return open_in_root(rootfd, path)
            except FileNotFoundError:
                target = _link_target(pfd, name)
                if target is None:
                    raise
            path = target if target.startswith("/") else f"{parent}/{target}"
        finally:
            os.close(pfd)
    raise OSError(errno.ELOOP, "too many symbolic links", path)


def make_mountpoint(rootfd: int, path: str, is_dir: bool) -> int:
    """Create the mount point for a mount at `path` (dir or file); O_PATH fd of it."""
    if is_dir:
        return mkdir_all(rootfd, path)
    try:
        fd = open_in_root(rootfd, path)
    except FileNotFoundError:
        return create_file(rootfd, path)
    return fd


def is_dir_fd(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def path_in_root(rootfd: int, fd: int) -> str | None:
    """Where the object behind `fd` is as the container sees it ("/proc/1/fd"): the kernel's
    own path of it (d_path, through /proc/self/fd) below that of `rootfd`; None if not below
    it. Exact for what a mount through `fd` lands on, whatever the links on the way."""
    root = os.readlink(fd_path(rootfd))
    where = os.readlink(fd_path(fd))
    if where == root:
        return "/"
    prefix = root.rstrip("/") + "/"
    return "/" + where[len(prefix):] if where.startswith(prefix) else None


def resolve_in_root(rootfd: int, path: str) -> str | None:
    """`path` with its links resolved inside the root (runc's SecureJoin): the longest part
    that exists as the kernel reaches it (path_in_root), then the rest as written."""
    parts = [p for p in os.path.normpath("/" + path).split("/") if p]
    rest: list[str] = []
    while True:
        try:
            fd = open_in_root(rootfd, "/".join(parts))
            break
        except (FileNotFoundError, NotADirectoryError):
            if not parts:
                raise
            rest.insert(0, parts.pop())
    try:
        where = path_in_root(rootfd, fd)
    finally:
        os.close(fd)
    return None if where is None else os.path.join(where, *rest)
