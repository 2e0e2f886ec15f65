"""Creating and joining namespaces (linux.namespaces), id maps and time offsets."""
from __future__ import annotations

import errno
import os

from ..errors import RuntimeFailure
from ..spec import IDMap, Namespace
from . import procfs
from . import sys as lsys

FLAGS = {
    "pid": lsys.CLONE_NEWPID, "network": lsys.CLONE_NEWNET, "mount": lsys.CLONE_NEWNS,
    "ipc": lsys.CLONE_NEWIPC, "uts": lsys.CLONE_NEWUTS, "user": lsys.CLONE_NEWUSER,
    "cgroup": lsys.CLONE_NEWCGROUP, "time": lsys.CLONE_NEWTIME,
}
# names under /proc/<pid>/ns/
PROC_NAMES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup", "time": "time"}


def wants_new(nss: list[Namespace], ns_type: str) -> bool:
    return any(ns.type == ns_type and not ns.path for ns in nss)


def unshare_flags(nss: list[Namespace], exclude: tuple[str, ...] = ()) -> int:
    flags = 0
    for ns in nss:
        if not ns.path and ns.type not in exclude:
            flags |= FLAGS[ns.type]
    return flags


def join_existing(nss: list[Namespace]) -> None:
    """setns() into every namespace given by path, the user namespace first (it grants the
    capabilities needed to join the others it owns)."""
    ordered = sorted((ns for ns in nss if ns.path), key=lambda ns: ns.type != "user")
    fds = []
    try:
        for ns in ordered:
            i = nss.index(ns)
            try:
                fds.append((ns, os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC), i))
            except OSError as e:
                raise RuntimeFailure(f"config.json: linux.namespaces[{i}].path: {ns.path}: "
                                     f"{e.strerror}") from None
        for ns, fd, i in fds:
            try:
                lsys.setns(fd, FLAGS[ns.type])
            except OSError as e:
                raise RuntimeFailure(f"config.json: linux.namespaces[{i}].path: join {ns.type} "
                                     f"namespace {ns.path}: {os.strerror(e.errno)}") from None
    finally:
        for _, fd, _ in fds:
            os.close(fd)


def write_id_maps(pid: int, uid_maps: list[IDMap], gid_maps: list[IDMap]) -> None:
    """Write /proc/<pid>/{uid,gid}_map for a child that has just unshared its user namespace.
    A non-root caller (runtime/rootless.py) denies setgroups before mapping its own gid alone
    (the kernel's condition), and has newuidmap/newgidmap write what it may not, as runc does."""
    for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        if not maps:
            continue
        key = "uidMappings" if name == "uid_map" else "gidMappings"
        try:
            if name == "gid_map" and os.geteuid() != 0:
                from .. import rootless
                if rootless.single_own_id(maps, os.getegid()):
                    _deny_setgroups(pid)
            write_id_map(pid, name, maps)
        except OSError as e:
            if e.errno != errno.EPERM or os.geteuid() == 0:
                raise RuntimeFailure(f"config.json: linux.{key}: write {name}: {e.strerror}") from None
            from .. import rootless
            try:
                rootless.map_with_tool(pid, name, maps)
            except RuntimeFailure as te:
                raise RuntimeFailure(f"config.json: linux.{key}: {te}") from None


def _deny_setgroups(pid: int) -> None:
    procfs.write(f"{pid}/setgroups", b"deny")


def write_id_map(pid: int | str, name: str, maps: list[IDMap]) -> None:
    """Write one of /proc/<pid>/uid_map and gid_map (nothing for no maps)."""
    if not maps:
        return
    procfs.write(f"{pid}/{name}", "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps))


def write_time_offsets(offsets: dict[str, tuple[int, int]]) -> None:
    data = "".join(f"{clock} {secs} {nsecs}\n" for clock, (secs, nsecs) in offsets.items())
    try:
        procfs.write("self/timens_offsets", data)
    except OSError as e:
        raise RuntimeFailure(f"config.json: linux.timeOffsets: {e.strerror}") from None


KEYCTL_JOIN_SESSION_KEYRING = 1


def new_session_keyring(name: str) -> None:
    """A fresh session keyring, so the container cannot see the caller's keys."""
    ret = lsys.syscall(lsys.NR["keyctl"], KEYCTL_JOIN_SESSION_KEYRING,
                       f"_ses.{os.path.basename(name)}".encode()[:255])
    if ret == -1 and lsys.get_errno() not in (errno.ENOSYS, errno.EPERM, errno.EACCES):
        raise OSError(lsys.get_errno(), "join session keyring")


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """Bring up lo in a new network namespace: one ioctl, no netlink needed."""
    import fcntl
    import struct

    import _socket  # not socket: its enums cost milliseconds
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        ifr = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def ns_paths(pid: int, nss: list[Namespace]) -> dict[str, str]:
    """The /proc paths `exec` joins later: every namespace type the container has."""
    return {ns.type: f"/proc/{pid}/ns/{PROC_NAMES[ns.type]}" for ns in nss}
