"""The rootfs and the bind-mount sources of a container in a user namespace, opened with the
host's credentials.

The init builds the mounts as root of the container's user namespace, an unprivileged uid on
the host: it cannot look a path up through a directory it may not search, such as the 0700
directory of host root that `mktemp -d` makes ("mount: Permission denied" for a bundle or a
bind source in one). runc 1.1 has its stage 0, still host root, open the bind sources in the
container's mount namespace and pass the fds on. Here stage 1 forks a helper before it enters
any namespace (so the helper keeps the host's credentials); once stage 1 has made the new mount
namespace it sends the helper that namespace, the helper joins it, opens every path with
O_PATH and sends the fds back. They refer to that namespace's copies of the host's mounts,
whose flags are locked against the user namespace (a read-only or nosuid host mount stays so
for the container), and the init clones and attaches them (open_tree + move_mount, see
mounts.RootfsBuilder) without looking the paths up itself. Symlinks in a source are followed,
as the host sees them, as before.
"""
from __future__ import annotations

import os

from ..errors import RuntimeFailure
from ..log import log
from ..spec import Spec
from . import fdpass
from . import sys as lsys
from .mounts import bind_source, mount_point_of

O_PATH = 0o10000000


class HostFds:
    """What the helper opened: the rootfs, the mount it lies on (made private before the
    rootfs is attached below it) and the source of each bind mount by its index in
    config.json; an OSError where the open failed (reported at that mount's turn)."""

    def __init__(self, rootfs: int, parent: int, sources: dict[int, int | OSError]) -> None:
        self.rootfs = rootfs
        self.parent = parent
        self.sources = sources

    def source(self, index: int) -> int:
        fd = self.sources[index]
        if isinstance(fd, OSError):
            raise fd
        return fd

    def close(self) -> None:
        for fd in [self.rootfs, self.parent, *self.sources.values()]:
            if isinstance(fd, int) and fd >= 0:
                os.close(fd)
        self.rootfs = self.parent = -1
        self.sources = {}


class SourceOpener:
    """The helper process: fork() it before entering any namespace, open() once the mount
    namespace to open the paths in exists."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        rootfs = spec.root_path
        self.paths = [rootfs, mount_point_of(rootfs)]
        self.indexes = []
        for m in spec.mounts:
            src = bind_source(m, spec.bundle)
            if src is not None:
                self.indexes.append(m.index)
                self.paths.append(src)
        self.sock, theirs = fdpass.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            _helper(theirs, self.paths)
        theirs.close()

    def open(self) -> HostFds | None:
        """Send the helper our mount namespace; collect one fd or errno per path. None if
        the helper could not join the namespace (say a seccomp profile around runp forbids
        setns): the init then looks the paths up itself, as it did before there was a helper."""
        got: list[int | OSError] = []
        try:
            ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                fdpass.send_fds(self.sock, b"go", [ns])
            finally:
                os.close(ns)
            for path in self.paths:
                data, fds = fdpass.recv_fds(self.sock, 64, 1)
                if fds:
                    got.append(fds[0])
                elif data:
                    err = int(data)
                    got.append(OSError(err, os.strerror(err), path))
                elif not got:
                    log.debug("mount sources: the helper could not join the mount namespace")
                    return None
                else:
                    raise RuntimeFailure("the process opening the mount sources on the host "
                                         "exited early")
            for fd in got[:2]:
                if isinstance(fd, OSError):
                    raise fd
        except BaseException:
            for fd in got:
                if isinstance(fd, int):
                    os.close(fd)
            raise
        finally:
            self.close()
        return HostFds(got[0], got[1], dict(zip(self.indexes, got[2:])))

    def close(self) -> None:
        """End the helper (it exits at EOF if it was not sent "go") and reap it."""
        if self.pid > 0:
            self.sock.close()
            lsys.reap(self.pid)
            self.pid = -1


def _helper(sock, paths: list[str]) -> None:
    """The helper's whole life: never returns."""
    code = 1
    try:
        lsys.close_range_from(3, {sock.fileno()})  # the init pipe, the fifo: not ours to hold
        data, fds = fdpass.recv_fds(sock, 16, 1)
        if data != b"go" or not fds:
            code = 0  # stage 1 failed before it got here
            return
        lsys.setns(fds[0], lsys.CLONE_NEWNS)
        os.close(fds[0])
        for path in paths:
            try:
                fd = os.open(path, O_PATH | os.O_CLOEXEC)
            except OSError as e:
                sock.send(str(e.errno).encode())
                continue
            fdpass.send_fds(sock, b"fd", [fd])
            os.close(fd)
        code = 0
    except BaseException:  # noqa: BLE001 - stage 1 sees EOF and says so
        pass
    finally:
        os._exit(code)
