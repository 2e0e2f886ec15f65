"""Idmapped bind mounts: mounts[].uidMappings/gidMappings and the "idmap"/"ridmap" options
(runtime-spec 1.2, config.md).

A detached copy of the source (open_tree OPEN_TREE_CLONE) gets MOUNT_ATTR_IDMAP with a user
namespace that carries the mount's mappings (mount_setattr), and is then attached at the
destination (move_mount). A mapping reads as linux.uidMappings does, and as runc writes it
into the namespace's uid_map: a file owned by containerID+k on the filesystem shows as hostID+k
through the mount, and a file made through it by hostID+k is stored as containerID+k. Without
mappings of its own a mount takes the container's user namespace (its owner on the filesystem
shows as the container's root where the container maps 0 to it).

Only host root can do this: the kernel wants CAP_SYS_ADMIN over the filesystem's superblock.
So the container init does it itself when it is host root (no user namespace), and the helper
of mount_sources.py does it for a container in a user namespace.
"""
from __future__ import annotations

import errno
import os

from ..spec import IDMap, Mount
from . import namespaces, procfs
from . import sys as lsys

MOUNT_ATTR_IDMAP = 0x100000


def kernel_supports() -> bool:
    """mount_setattr(2) is there (Linux 5.12, with MOUNT_ATTR_IDMAP): an empty attribute
    set on an invalid fd fails EBADF or EINVAL where it exists, ENOSYS where it does not."""
    try:
        lsys.mount_setattr(-1, 0, 0, recursive=False)
    except OSError as e:
        return e.errno != errno.ENOSYS
    return True


def _key(maps: list[IDMap]) -> tuple:
    return tuple((m.container_id, m.host_id, m.size) for m in maps)


class Idmapper:
    """Makes idmapped copies of bind sources; keeps one user namespace per distinct mapping.
    `default_userns`: an fd of the user namespace whose mappings a mount without its own
    takes (the container's), -1 if there is none."""

    def __init__(self, default_userns: int = -1) -> None:
        self.default_userns = default_userns
        self._made: dict[tuple, int] = {}

    def clone(self, src: str | int, m: Mount, rbind: bool, ridmap: bool) -> int:
        """A detached, idmapped copy of the mount at `src` (a path or an fd)."""
        userns = self._userns_for(m)
        tree = lsys.clone_tree(src, rbind)
        try:
            lsys.mount_setattr(tree, MOUNT_ATTR_IDMAP, 0, recursive=ridmap, userns_fd=userns)
        except OSError as e:
            os.close(tree)
            if e.errno == errno.EINVAL:  # (what the kernel says of procfs, sysfs, nfs, ...)
                raise OSError(e.errno, "idmapped mount: the filesystem does not support it "
                                       f"({e.strerror})") from None
            raise
        return tree

    def _userns_for(self, m: Mount) -> int:
        if not m.uid_mappings:
            if self.default_userns < 0:  # (check_idmapped refuses this config before)
                raise OSError(errno.EINVAL, "idmapped mount without mappings or user namespace")
            return self.default_userns
        key = (_key(m.uid_mappings), _key(m.gid_mappings))
        if key not in self._made:
            self._made[key] = new_userns(m.uid_mappings, m.gid_mappings)
        return self._made[key]

    def close(self) -> None:
        for fd in self._made.values():
            os.close(fd)
        self._made = {}


def new_userns(uid_maps: list[IDMap], gid_maps: list[IDMap]) -> int:
    """An fd of a new user namespace with these mappings: a child unshares it and waits while
    we write its maps (host root may map anything); it exits once we hold the namespace."""
    pid_r, pid_w = os.pipe()  # child -> us: its pid as our procfs names it
    go_r, go_w = os.pipe()  # us -> child: EOF lets it exit
    proc = procfs.root()  # (the child's pid is written in this procfs's pid namespace)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(pid_r)
            os.close(go_w)
            lsys.unshare(lsys.CLONE_NEWUSER)
            # (in a new pid namespace our pid differs from the one our procfs uses)
            os.write(pid_w, os.readlink("self", dir_fd=proc).encode())
            os.read(go_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(pid_w)
    os.close(go_r)
    try:
        proc_pid = os.read(pid_r, 32).decode()
        if not proc_pid:
            raise OSError(errno.EPERM, "idmapped mount: cannot make a user namespace")
        for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
            try:
                namespaces.write_id_map(proc_pid, name, maps)
            except OSError as e:
                raise OSError(e.errno, f"idmapped mount: write {name}: {e.strerror}") from None
        nsdir = procfs.open_file(f"{proc_pid}/ns", procfs.O_PATH | os.O_DIRECTORY)
        try:
            return os.open("user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=nsdir)
        finally:
            os.close(nsdir)
    finally:
        os.close(pid_r)
        os.close(go_w)
        lsys.reap(pid)
