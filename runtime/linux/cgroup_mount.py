"""Mounts of type "cgroup": what the container sees at /sys/fs/cgroup.

With a cgroup namespace the kernel shows the container's own cgroup as the root, so the
hierarchies are mounted afresh. Without one, runp does what runc does: a tmpfs holding a bind
mount of the container's directory in each hierarchy (v1), or a bind of its cgroup2 directory.
"""
from __future__ import annotations

import errno
import os

from ..spec import Mount, Spec
from . import paths
from . import sys as lsys
from .namespaces import wants_new


class CgroupPaths:
    """Where the container's cgroup is (Manager.to_dict(), as the parent sends it) and the
    host's v1 hierarchies (mountpoint, controllers): all the mounts need, without the cgroup
    package (a millisecond to import, right when the init waits for it)."""

    def __init__(self, d: dict, v1_mounts: list) -> None:
        self.mode = d["mode"]
        self.paths = d.get("paths") or {}
        self.unified = d.get("unified")
        self.v1_mounts = [(mnt, frozenset(ctrls)) for mnt, ctrls in v1_mounts]


def make_mounter(manager, spec: Spec):
    if manager is None:
        return None
    cgroupns = wants_new(spec.linux.namespaces, "cgroup")

    def mount_cgroup(builder, dest_fd: int, m: Mount, opts) -> None:
        flags = opts.flags & ~(lsys.MS_BIND | lsys.MS_REC | lsys.MS_REMOUNT)
        target = paths.fd_path(dest_fd)
        if manager.mode == "v2":
            _mount_v2(builder, target, m.destination, manager.unified, flags, cgroupns)
            return
        lsys.mount("tmpfs", target, "tmpfs", flags & ~lsys.MS_RDONLY, "mode=755")
        top = paths.open_in_root(builder.rootfd, m.destination)  # the tmpfs root
        try:
            for mnt, ctrls in manager.v1_mounts:
                name = os.path.basename(mnt)
                host_dir = next((manager.paths[c] for c in ctrls if c in manager.paths), None)
                if host_dir is None:
                    continue
                os.mkdir(name, 0o755, dir_fd=top)
                sub = paths.open_in_root(builder.rootfd, f"{m.destination}/{name}")
                try:
                    if cgroupns:
                        data = ",".join(sorted(ctrls))
                        source = name if data.startswith("name=") else "cgroup"  # as runc
                        lsys.mount(source, paths.fd_path(sub), "cgroup", flags, data)
                    else:
                        _bind(builder, host_dir, sub, f"{m.destination}/{name}", flags)
                finally:
                    os.close(sub)
                if "," in name:  # cpu,cpuacct: links for each controller, as on the host
                    for c in name.split(","):
                        try:
                            os.symlink(name, c, dir_fd=top)
                        except FileExistsError:
                            pass
            if manager.unified and manager.mode == "hybrid":
                os.mkdir("unified", 0o755, dir_fd=top)
                sub = paths.open_in_root(builder.rootfd, f"{m.destination}/unified")
                try:
                    _mount_v2(builder, paths.fd_path(sub), f"{m.destination}/unified",
                              manager.unified, flags, cgroupns)
                finally:
                    os.close(sub)
            if flags & lsys.MS_RDONLY:
                lsys.mount(None, paths.fd_path(top), None,
                           lsys.MS_REMOUNT | lsys.MS_BIND | flags)
        finally:
            os.close(top)

    return mount_cgroup


def _mount_v2(builder, target: str, dest: str, host_dir: str | None, flags: int, cgroupns: bool) -> None:
    if cgroupns or host_dir is None:
        try:
            lsys.mount("cgroup2", target, "cgroup2", flags)
            return
        except OSError as e:
            # Rootless, cgroup2 cannot always be mounted: EPERM in a user namespace that does
            # not own the cgroup namespace, EBUSY on a /sys bound from the host (its cgroup2
            # mount is there already: the same filesystem on its own root). Then, as runc: a
            # bind of the container's cgroup, or, without one (cgroups/rootless.py), an empty
            # read-only directory: nothing of the cgroup tree to show.
            if e.errno not in (errno.EPERM, errno.EBUSY):
                raise
        if host_dir is None:
            lsys.mount("tmpfs", target, "tmpfs", flags | lsys.MS_RDONLY, "mode=755")
            return
    fd = os.open(target, os.O_PATH | os.O_CLOEXEC)
    try:
        _bind(builder, host_dir, fd, dest, flags)
    finally:
        os.close(fd)


def _bind(builder, src: str, dest_fd: int, dest: str, flags: int) -> None:
    lsys.mount(src, paths.fd_path(dest_fd), None, lsys.MS_BIND)
    if flags:
        top = paths.open_in_root(builder.rootfd, dest)
        try:
            lsys.mount(None, paths.fd_path(top), None, lsys.MS_BIND | lsys.MS_REMOUNT | flags)
        finally:
            os.close(top)
