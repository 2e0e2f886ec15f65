"""/proc files that nothing mounted over /proc can redirect (CVE-2025-52881).

A write through a /proc path (a sysctl, oom_score_adj, an LSM attr, an id map) goes wherever
that path leads when it is opened. The container's config, or a racing container that shares a
mount with it, can put a bind of ANOTHER procfs file there (a host process's oom_score_adj, a
global sysctl): fstatfs still says procfs, and the write lands on the host. So runp reaches
/proc files only below a procfs root of its own, obtained once per process:

1. a fresh procfs instance (fsopen/fsconfig/fsmount): mounted nowhere, so nothing is mounted
   on it and nothing can be later;
2. else (no permission for a new instance, e.g. in a user namespace that does not own our pid
   namespace) a detached clone of /proc (open_tree OPEN_TREE_CLONE, without the mounts on it if
   the kernel lets us);
3. else /proc itself.

Each is checked to be a procfs root (fstatfs PROC_SUPER_MAGIC and inode 1, as runc's
pathrs-lite does). Below it paths are opened with openat2 RESOLVE_BENEATH | RESOLVE_NO_XDEV |
RESOLVE_NO_MAGICLINKS: no way out of it, no crossing onto anything mounted over a file (EXDEV;
only possible with 2 and 3), no magic link; and the result is checked to be on procfs.

The root is held as a close-on-exec fd; processes that close their fds (close_range before
exec) keep it with held(). A process whose fd was closed gets a new root on next use: the init
opens its own first thing, before any of the container's mounts exist.
"""
from __future__ import annotations

import errno
import os

from . import sys as lsys

PROC_SUPER_MAGIC = 0x9FA0
PROC_ROOT_INO = 1
O_PATH = 0o10000000
_BELOW = lsys.RESOLVE_BENEATH | lsys.RESOLVE_NO_XDEV | lsys.RESOLVE_NO_MAGICLINKS
# the new instance: nothing on it may be executed, no device node used, no set-id bit honoured
_ATTRS = 0x2 | 0x4 | 0x8  # MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC

_root = -1
_root_dev = -1
how = ""  # which of the three ways gave the root: "fsmount", "clone", "proc" (for --debug/tests)


def root() -> int:
    """Our procfs root fd (O_PATH, close-on-exec), made on first use. Call it early in a process
    whose /proc may later be the container's (the init: before the rootfs is built; exec: before
    joining the container)."""
    global _root, _root_dev, how
    if _root >= 0:
        try:
            st = os.fstat(_root)
            if st.st_dev == _root_dev and st.st_ino == PROC_ROOT_INO:
                return _root
        except OSError:
            pass
        # closed (close_range) or now another file's number: not ours to close
    fd, how = _new_root()
    try:
        st = _verify_root(fd)
        fd = _high(fd)
    except BaseException:
        os.close(fd)
        raise
    _root, _root_dev = fd, st.st_dev
    return fd


def held() -> frozenset[int]:
    """The fds this module holds (for a close_range that must keep them until exec)."""
    return frozenset((_root,)) if _root >= 0 else frozenset()


def _high(fd: int) -> int:
    """The fd moved to 1000 or above: far from 3..3+N, where the caller's passed fds go (a
    free number there is filled with /dev/null; ours would be handed to the container)."""
    import fcntl
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000)
    except OSError:  # (RLIMIT_NOFILE below 1000)
        return fd
    os.close(fd)
    return high


def _new_root() -> tuple[int, str]:
    try:
        return lsys.new_mount("proc", {}, _ATTRS), "fsmount"
    except OSError:
        pass
    for recursive in (False, True):  # with the mounts on it only where the kernel insists
        try:  # (EINVAL: locked mounts on it, in a user namespace); RESOLVE_NO_XDEV sees them
            return lsys.clone_tree("/proc", recursive), "clone"
        except OSError:
            pass
    return os.open("/proc", O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC), "proc"


def _verify_root(fd: int) -> os.stat_result:
    st = os.fstat(fd)
    if lsys.fstatfs_type(fd) != PROC_SUPER_MAGIC or st.st_ino != PROC_ROOT_INO:
        raise OSError(errno.EXDEV, "/proc is not the root of a procfs")
    return st


def open_file(path: str, flags: int) -> int:
    """Open /proc/`path` ("self/oom_score_adj", "sys/net/ipv4/ip_forward", "123/uid_map")
    below our procfs root. OSError names "/proc/<path>"; EXDEV means a mount over it."""
    rel = path.removeprefix("/proc/")
    try:
        fd = lsys.openat2(root(), rel, flags, _BELOW)
    except OSError as e:
        raise OSError(e.errno, _why(e.errno), f"/proc/{rel}") from None
    try:
        if lsys.fstatfs_type(fd) != PROC_SUPER_MAGIC:  # (cannot be, below a verified root)
            raise OSError(errno.EXDEV, "not on procfs", f"/proc/{rel}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _why(err: int) -> str:
    if err == errno.EXDEV:
        return "something is mounted over it"
    if err == errno.ELOOP:
        return "it leads through a magic link"
    return os.strerror(err)


def write(path: str, data: bytes | str) -> None:
    """Write `data` to /proc/`path` in one write(2) (OSError on failure, as open_file)."""
    fd = open_file(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
    except OSError as e:
        raise OSError(e.errno, e.strerror, f"/proc/{path.removeprefix('/proc/')}") from None
    finally:
        os.close(fd)


def read(path: str, size: int = 65536) -> bytes:
    """Read up to `size` bytes of /proc/`path`."""
    fd = open_file(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def write_or_fail(path: str, value: str, what: str) -> None:
    """write(), with failures as one line naming `what` (the JSON path) and the file."""
    from ..errors import RuntimeFailure
    try:
        write(path, value)
    except OSError as e:
        raise RuntimeFailure(f"{what}: {e.filename}: {e.strerror}") from None
