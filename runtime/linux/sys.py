"""Thin wrappers for the Linux syscalls Python 3.11 lacks.

Everything here raises OSError with errno set, like the os module does. The calls go through
runtime.linux.libc (on _ctypes: this is the path of every create); `libc`, a ctypes.CDLL of
the same library, is loaded on first use by the modules that need ctypes' structures. libc is
loaded by name (never ctypes.util.find_library, which spawns processes).
"""
from __future__ import annotations

import os
import struct

from .arch import NR  # noqa: F401 (re-exported: the running architecture's syscall numbers)
from .libc import Long, buffer, function, get_errno, syscall  # noqa: F401 (re-exported)


def __getattr__(name: str):
    if name == "libc":
        import ctypes
        globals()["libc"] = lib = ctypes.CDLL("libc.so.6", use_errno=True)
        return lib
    raise AttributeError(name)


# clone / unshare flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

MNT_DETACH = 0x2

# prctl
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2 resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# open_tree(2), move_mount(2), mount_setattr(2)
AT_FDCWD = -100
OPEN_TREE_CLONE = 0x1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40

# fsopen(2), fsconfig(2), fsmount(2); faccessat2(2)
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
AT_EACCESS = 0x200


def _check(ret: int, what: str = "", path: str | None = None) -> int:
    if ret == -1:
        err = get_errno()
        if path is not None:
            raise OSError(err, f"{what}: {os.strerror(err)}", path)
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


_unshare = function("unshare")
_setns = function("setns")
_mount = function("mount")
_umount2 = function("umount2")
_sethostname = function("sethostname")
_setdomainname = function("setdomainname")
_prctl = function("prctl")
_fstatfs = function("fstatfs")


def fstatfs_type(fd: int) -> int:
    """f_type of the file system `fd` is on (PROC_SUPER_MAGIC, ...)."""
    buf = buffer(120)  # struct statfs; f_type (a long) comes first
    _check(_fstatfs(fd, buf), "fstatfs")
    return struct.unpack_from("l", buf.raw)[0]


def unshare(flags: int) -> None:
    _check(_unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    ret = _mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype is not None else None,
        Long(flags),
        data.encode() if data else None,
    )
    _check(ret, "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_umount2(target.encode(), flags), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(syscall(NR["pivot_root"], new_root.encode(), put_old.encode()), "pivot_root", new_root)


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_sethostname(b, Long(len(b))), "sethostname")


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_setdomainname(b, Long(len(b))), "setdomainname")


_prlimit = function("prlimit64")  # struct rlimit64: 64-bit limits on 32-bit arches too
RLIM_INFINITY = (1 << 64) - 1


def setrlimit(resource: int, soft: int, hard: int) -> int:
    """prlimit(2) of this process: set (soft, hard), return the hard limit that was in force.
    (The resource module is a shared library of its own: 0.3 ms to load for this one call.)"""
    limits = struct.pack("=QQ", soft, hard)
    old = buffer(16)
    _check(_prlimit(0, resource, limits, old), "setrlimit")
    return struct.unpack("=QQ", old.raw)[1]


def getrlimit_hard(resource: int) -> int:
    old = buffer(16)
    _check(_prlimit(0, resource, None, old), "getrlimit")
    return struct.unpack("=QQ", old.raw)[1]


def prctl(option: int, arg2: int | bytes = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); arg2 may be bytes (a pointer: PR_SET_NAME)."""
    a2 = arg2 if isinstance(arg2, bytes) else Long(arg2)
    return _check(_prctl(option, a2, Long(arg3), Long(arg4), Long(arg5)), "prctl")


def reap(pid: int) -> None:
    """Wait for a child of ours to exit and collect it (nothing if it is not ours)."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def clone_tree(src: int | str, recursive: bool) -> int:
    """open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `src` (an fd, or a path
    that is followed), with the mounts below it if `recursive`, as an O_PATH fd of its root.
    Closing the fd before attach_tree() unmounts the copy again."""
    flags = OPEN_TREE_CLONE | os.O_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    if isinstance(src, int):
        return _check(syscall(NR["open_tree"], src, b"", flags | AT_EMPTY_PATH), "open_tree")
    return _check(syscall(NR["open_tree"], AT_FDCWD, src.encode(), flags), "open_tree", src)


def mount_setattr(fd: int, attr_set: int, attr_clr: int, recursive: bool = True,
                  userns_fd: int = 0) -> None:
    """mount_setattr(2) on the mount at `fd` (and the mounts below it if `recursive`)."""
    attr = struct.pack("QQQQ", attr_set, attr_clr, 0, userns_fd)  # struct mount_attr
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(syscall(NR["mount_setattr"], fd, b"", flags, attr, len(attr)), "mount_setattr")


def attach_tree(tree_fd: int, dest_fd: int) -> None:
    """move_mount(2) of a detached tree onto the object behind `dest_fd`."""
    _check(syscall(NR["move_mount"], tree_fd, b"", dest_fd, b"",
                   MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH), "move_mount")


def new_mount(fstype: str, options: dict[str, str], attrs: int = 0) -> int:
    """A new, detached mount of a fresh `fstype` instance (fsopen, fsconfig, fsmount): an
    O_PATH fd of its root, attached nowhere (attach_tree() can put it somewhere)."""
    ctx = _check(syscall(NR["fsopen"], fstype.encode(), FSOPEN_CLOEXEC), "fsopen", fstype)
    try:
        for key, value in options.items():
            _check(syscall(NR["fsconfig"], ctx, FSCONFIG_SET_STRING, key.encode(), value.encode(), 0),
                   f"fsconfig {key}={value}", fstype)
        _check(syscall(NR["fsconfig"], ctx, FSCONFIG_CMD_CREATE, None, None, 0), "fsconfig create",
               fstype)
        return _check(syscall(NR["fsmount"], ctx, FSMOUNT_CLOEXEC, attrs), "fsmount", fstype)
    finally:
        os.close(ctx)


def exec_denied(fd: int) -> bool:
    """Whether execve would refuse our effective ids the file behind `fd` (faccessat2 X_OK
    says EACCES, a noexec mount included). Any other failure (ENOSYS, a seccomp profile
    without faccessat2) is no answer: False, and execve decides."""
    return syscall(NR["faccessat2"], fd, b"", os.X_OK, AT_EMPTY_PATH | AT_EACCESS) == -1 \
        and get_errno() == 13  # EACCES


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open `path` relative to `dirfd` under the `resolve` restrictions."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, resolve)  # struct open_how
    while True:
        ret = syscall(NR["openat2"], dirfd, path.encode(), how, len(how))
        if ret == -1 and get_errno() == 11:  # EAGAIN: a rename raced the lookup, retry
            continue
        return _check(ret, "openat2", path)


def close_range_from(first: int, keep: set[int] | frozenset[int] = frozenset()) -> None:
    """Close every fd >= first except those in keep (used right before exec)."""
    lo = first
    for k in sorted(k for k in keep if k >= first):
        if k > lo:
            _close_range(lo, k - 1)
        lo = k + 1
    _close_range(lo, 0xFFFFFFFF)


def _close_range(lo: int, hi: int) -> None:
    if syscall(NR["close_range"], lo, hi, 0) == -1:
        os.closerange(lo, min(hi + 1, 65536))
