"""The host's mounts that --no-pivot leaves under the container's root, and their removal.

pivot_root takes the old root out of the container's mount namespace (runp then detaches it).
--no-pivot, for a root that cannot be pivoted (an initramfs), moves the rootfs onto "/" and
chroots instead: the host's mounts stay in the namespace, under the container's root. No path
reaches them, but the kernel counts them: a nested user namespace may mount a fresh procfs or
sysfs whenever a full, uncovered one is in its mount namespace (mount_too_revealing()), and
the host's /proc is one. runc unmounts the host's procfs and sysfs mounts (or covers them with
a tmpfs when it may not unmount them) in msMoveRoot. Here every mount under the old root is
detached; those that may not be (locked: a user namespace's copy of a more privileged
namespace) are covered if they are a procfs or sysfs; then the result is checked.

Nothing here may reach the host's namespace. It runs only in a mount namespace made for the
container (the caller checks), and an unmount propagates to the peers of the unmounted mount's
parent: the old root (made a slave before the move) and each unmounted tree (made slaves
recursively first) have none. runc unmounts without that care: with rootfsPropagation
"rshared", the host's mounts shared (as systemd makes them) and the bundle on a mount of its
own, runc 1.1.5 unmounts the host's /proc (tests/test_mounts_dropin.py has that host).
"""
from __future__ import annotations

import errno
import os

from ..errors import RuntimeFailure
from . import mountinfo
from . import sys as lsys

VISIBLE_CHECKED = ("proc", "sysfs")  # the filesystems mount_too_revealing() guards


def detach_host_mounts(proc: int, container_root: int) -> None:
    """Detach the host's mounts. Call after the rootfs was moved onto "/" and before chroot:
    "/" still names the old root then, and `proc` is an fd of the host's procfs root."""
    top = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = mountinfo.mount_id(proc, top)
    finally:
        os.close(top)
    ours = mountinfo.mount_id(proc, container_root)
    kept: set[int] = set()
    while _detach_some(proc, old, ours, kept):
        pass
    _cover_visible(proc, old, ours)


class _Tree:
    """The namespace's mounts: by id, by parent, and which of them are the host's."""

    def __init__(self, proc: int, old: int, ours: int) -> None:
        self.mounts = mountinfo.read(proc)
        self.by_id = {m.id: m for m in self.mounts}
        self.kids: dict[int, list[mountinfo.MountEntry]] = {}
        for m in self.mounts:
            if m.id != m.parent:
                self.kids.setdefault(m.parent, []).append(m)
        # the container's root and what it is stacked on (down to the old root) are not the
        # host's to remove; anything else under the old root is
        self.keep = {ours}
        m = self.by_id.get(ours)
        while m is not None and m.id != old and m.parent != m.id:
            self.keep.add(m.parent)
            m = self.by_id.get(m.parent)
        self.host: list[mountinfo.MountEntry] = []
        todo = [k for k in self.kids.get(old, []) if k.id != ours]
        while todo:
            m = todo.pop()
            if m.id not in self.keep:
                self.host.append(m)
            todo.extend(k for k in self.kids.get(m.id, []) if k.id != ours)

    def stack_under(self, top: int, below: mountinfo.MountEntry) -> list[mountinfo.MountEntry] | None:
        """The mounts from `top`'s parent down to `below` if `top` is stacked on `below` (at
        the same mount point), else None."""
        chain = []
        m = self.by_id.get(top)
        while m is not None and m.mountpoint == below.mountpoint and m.id != m.parent:
            parent = self.by_id.get(m.parent)
            if parent is None:
                break
            chain.append(parent)
            if parent.id == below.id:
                return chain
            m = parent
        return None

    def uncovered_visible(self) -> list[mountinfo.MountEntry]:
        """Host procfs and sysfs mounts of the whole filesystem with nothing on their root:
        those that let a nested user namespace mount a fresh one."""
        covered = {m.parent for m in self.mounts
                   if m.parent in self.by_id and self.by_id[m.parent].mountpoint == m.mountpoint}
        return [m for m in self.host
                if m.fstype in VISIBLE_CHECKED and m.root == "/" and m.id not in covered]


def _top_at(proc: int, path: str) -> int | None:
    """The id of the mount `path` reaches (the topmost one there), None if it is gone."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return mountinfo.mount_id(proc, fd)
    finally:
        os.close(fd)


def _detach_some(proc: int, old: int, ours: int, kept: set[int]) -> bool:
    """One pass over the old root's own mounts; True if it detached any (a mount hidden
    under another one is reached in a later pass)."""
    tree = _Tree(proc, old, ours)
    done = False
    for m in tree.kids.get(old, []):
        if m.id in tree.keep or m.id in kept:
            continue
        top = _top_at(proc, m.mountpoint)
        if top is None:
            continue
        if top != m.id:
            under = tree.stack_under(top, m)
            if under is None:
                continue  # under a mount on a directory above it: reachable once that is gone
            if any(u.shared for u in under):
                # unmounting the top would propagate to the peers of what it is stacked on,
                # which no path reaches to make it a slave first: leave the whole stack
                kept.add(m.id)
                continue
        try:
            lsys.mount(None, m.mountpoint, None, lsys.MS_SLAVE | lsys.MS_REC)
            lsys.umount2(m.mountpoint, lsys.MNT_DETACH)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM):
                raise RuntimeFailure(f"--no-pivot: detach the host's {m.mountpoint}: "
                                     f"{os.strerror(e.errno)}") from None
            kept.add(m.id)  # locked to the old root (a user namespace): covered below if need be
            continue
        done = True
    return done


def _cover_visible(proc: int, old: int, ours: int) -> None:
    """Cover the host's procfs and sysfs mounts that stayed (runc's fallback), then make sure
    none is left that the kernel would count as fully visible."""
    for m in _Tree(proc, old, ours).uncovered_visible():
        if _top_at(proc, m.mountpoint) != m.id:
            continue
        try:
            lsys.mount(None, m.mountpoint, None, lsys.MS_SLAVE)  # the cover stays ours
            lsys.mount("tmpfs", m.mountpoint, "tmpfs",
                       lsys.MS_RDONLY | lsys.MS_NOSUID | lsys.MS_NODEV | lsys.MS_NOEXEC)
        except OSError as e:
            raise RuntimeFailure(f"--no-pivot: cover the host's {m.fstype} at {m.mountpoint}: "
                                 f"{os.strerror(e.errno)}") from None
    left = _Tree(proc, old, ours).uncovered_visible()
    if left:
        raise RuntimeFailure(f"--no-pivot: the host's {left[0].fstype} at {left[0].mountpoint} "
                             "cannot be detached or covered: it would stay visible to the container")
