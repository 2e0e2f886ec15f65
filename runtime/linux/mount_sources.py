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
as the host sees them, as before. An idmapped bind needs host root too (idmapped.py): the
helper makes its detached copy, and the init attaches that.
"""
from __future__ import annotations

import os

from ..errors import RuntimeFailure
from ..log import log
from ..spec import Mount, Spec
from . import fdpass, idmapped
from . import sys as lsys
from .mounts import MountOptions, bind_source, mount_point_of

O_PATH = 0o10000000


class HostFds:
    """What the helper opened: the rootfs, the mount it lies on (made private before the
    rootfs is attached below it) and the source of each bind mount by its index in
    config.json, as (fd, is it a detached copy to attach as it is); an OSError where that
    failed (reported at that mount's turn)."""

    def __init__(self, rootfs: int, parent: int,
                 sources: dict[int, tuple[int, bool] | OSError]) -> None:
        self.rootfs = rootfs
        self.parent = parent
        self.sources = sources

    def source(self, index: int) -> tuple[int, bool]:
        """The source of mounts[index]; a detached copy becomes the caller's to close."""
        got = self.sources[index]
        if isinstance(got, OSError):
            raise got
        if got[1]:
            del self.sources[index]
        return got

    def close(self) -> None:
        for got in self.sources.values():
            if not isinstance(got, OSError):
                os.close(got[0])
        for fd in (self.rootfs, self.parent):
            if fd >= 0:
                os.close(fd)
        self.rootfs = self.parent = -1
        self.sources = {}


class _Request:
    """One path for the helper to open; with `mount` an idmapped copy of it to make."""

    def __init__(self, path: str, mount: Mount | None = None) -> None:
        self.path = path
        self.mount = mount


class SourceOpener:
    """The helper process: fork() it before entering any namespace, open() once the mount
    namespace to open the paths in exists."""

    def __init__(self, spec: Spec) -> None:
        rootfs = spec.root_path
        self.requests = [_Request(rootfs), _Request(mount_point_of(rootfs))]
        self.indexes = []
        for m in spec.mounts:
            src = bind_source(m, spec.bundle)
            if src is not None:
                self.indexes.append(m.index)
                self.requests.append(_Request(src, m if m.idmapped() else None))
        self.sock, theirs = fdpass.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            _helper(theirs, self.requests)
        theirs.close()

    def open(self) -> HostFds | None:
        """Send the helper our mount namespace (and user namespace, whose mappings an
        idmapped mount may take); collect an fd or an error per path. None if the helper
        could not join the namespace (say a seccomp profile around runp forbids setns): the
        init then looks the paths up itself, as it did before there was a helper."""
        got: list[tuple[int, bool] | OSError] = []
        try:
            nsfds = [os.open(f"/proc/self/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                     for ns in ("mnt", "user")]
            try:
                fdpass.send_fds(self.sock, b"go", nsfds)
            finally:
                for fd in nsfds:
                    os.close(fd)
            for req in self.requests:
                data, fds = fdpass.recv_fds(self.sock, 4096, 1)
                if fds:
                    got.append((fds[0], data == b"tree"))
                elif data:
                    err, _, text = data.decode(errors="replace").partition(" ")
                    got.append(OSError(int(err), text, req.path))
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
                if not isinstance(fd, OSError):
                    os.close(fd[0])
            raise
        finally:
            self.close()
        return HostFds(got[0][0], got[1][0], dict(zip(self.indexes, got[2:])))

    def close(self) -> None:
        """End the helper (it exits at EOF if it was not sent "go") and reap it."""
        if self.pid > 0:
            self.sock.close()
            lsys.reap(self.pid)
            self.pid = -1


def _helper(sock, requests: list[_Request]) -> None:
    """The helper's whole life: never returns."""
    code = 1
    try:
        lsys.close_range_from(3, {sock.fileno()})  # the init pipe, the fifo: not ours to hold
        data, fds = fdpass.recv_fds(sock, 16, 2)
        if data != b"go" or len(fds) != 2:
            code = 0  # stage 1 failed before it got here
            return
        lsys.setns(fds[0], lsys.CLONE_NEWNS)
        os.close(fds[0])
        mapper = idmapped.Idmapper(fds[1])  # (the container's user namespace)
        for req in requests:
            try:
                if req.mount is None:
                    kind, fd = b"fd", os.open(req.path, O_PATH | os.O_CLOEXEC)
                else:
                    opts = MountOptions(req.mount.options)
                    kind, fd = b"tree", mapper.clone(req.path, req.mount,
                                                     bool(opts.flags & lsys.MS_REC),
                                                     opts.idmap_recursive)
            except OSError as e:
                sock.send(f"{e.errno} {e.strerror}".encode())
                continue
            fdpass.send_fds(sock, kind, [fd])
            os.close(fd)
        code = 0
    except BaseException:  # noqa: BLE001 - stage 1 sees EOF and says so
        pass
    finally:
        os._exit(code)
