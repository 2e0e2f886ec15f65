"""The container's filesystem: rootfs, config mounts, pivot_root, masked and read-only paths.

Runs in the container init, inside its new mount namespace. Every destination is resolved inside
the rootfs (see paths.py) and mounted through the resulting fd, so a symlink in the rootfs can
never redirect a mount onto the host.
"""
from __future__ import annotations

import errno
import os
import stat

from ..errors import RuntimeFailure
from ..spec import Mount, Spec
from . import paths, procfs
from .mountinfo import unescape as _unescape
from . import sys as lsys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import idmapped

# superblock flags mount(2) takes that no other module needs (sys.py has the common ones)
MS_POSIXACL, MS_I_VERSION = 1 << 16, 1 << 23
# option -> (clear, set) on the mount flags: every keyword of config.md's list that is a flag
# (runc's mountFlags table). Passed as data, "defaults", "silent", "iversion", "acl" make a
# tmpfs or proc mount fail with EINVAL.
_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, lsys.MS_RDONLY), "rw": (True, lsys.MS_RDONLY),
    "nosuid": (False, lsys.MS_NOSUID), "suid": (True, lsys.MS_NOSUID),
    "nodev": (False, lsys.MS_NODEV), "dev": (True, lsys.MS_NODEV),
    "noexec": (False, lsys.MS_NOEXEC), "exec": (True, lsys.MS_NOEXEC),
    "sync": (False, lsys.MS_SYNCHRONOUS), "async": (True, lsys.MS_SYNCHRONOUS),
    "dirsync": (False, lsys.MS_DIRSYNC),
    "remount": (False, lsys.MS_REMOUNT),
    "mand": (False, lsys.MS_MANDLOCK), "nomand": (True, lsys.MS_MANDLOCK),
    "noatime": (False, lsys.MS_NOATIME), "atime": (True, lsys.MS_NOATIME),
    "nodiratime": (False, lsys.MS_NODIRATIME), "diratime": (True, lsys.MS_NODIRATIME),
    "relatime": (False, lsys.MS_RELATIME), "norelatime": (True, lsys.MS_RELATIME),
    "strictatime": (False, lsys.MS_STRICTATIME), "nostrictatime": (True, lsys.MS_STRICTATIME),
    "lazytime": (False, lsys.MS_LAZYTIME), "nolazytime": (True, lsys.MS_LAZYTIME),
    "nosymfollow": (False, lsys.MS_NOSYMFOLLOW), "symfollow": (True, lsys.MS_NOSYMFOLLOW),
    "bind": (False, lsys.MS_BIND), "rbind": (False, lsys.MS_BIND | lsys.MS_REC),
    "defaults": (False, 0),
    "silent": (False, lsys.MS_SILENT), "loud": (True, lsys.MS_SILENT),
    "iversion": (False, MS_I_VERSION), "noiversion": (True, MS_I_VERSION),
    "acl": (False, MS_POSIXACL), "noacl": (True, MS_POSIXACL),
}
_PROPAGATION = {
    "private": lsys.MS_PRIVATE, "rprivate": lsys.MS_PRIVATE | lsys.MS_REC,
    "shared": lsys.MS_SHARED, "rshared": lsys.MS_SHARED | lsys.MS_REC,
    "slave": lsys.MS_SLAVE, "rslave": lsys.MS_SLAVE | lsys.MS_REC,
    "unbindable": lsys.MS_UNBINDABLE, "runbindable": lsys.MS_UNBINDABLE | lsys.MS_REC,
}
# mount_setattr(2) attributes for the recursive forms ("rro", "rnosuid", ...)
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 0x1, 0x2, 0x4, 0x8
MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME = 0x70, 0x10, 0x20
MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOSYMFOLLOW = 0x80, 0x200000
_REC_ATTRS: dict[str, tuple[int, int]] = {  # option -> (clear, set)
    "rro": (0, MOUNT_ATTR_RDONLY), "rrw": (MOUNT_ATTR_RDONLY, 0),
    "rnosuid": (0, MOUNT_ATTR_NOSUID), "rsuid": (MOUNT_ATTR_NOSUID, 0),
    "rnodev": (0, MOUNT_ATTR_NODEV), "rdev": (MOUNT_ATTR_NODEV, 0),
    "rnoexec": (0, MOUNT_ATTR_NOEXEC), "rexec": (MOUNT_ATTR_NOEXEC, 0),
    "rnodiratime": (0, MOUNT_ATTR_NODIRATIME), "rdiratime": (MOUNT_ATTR_NODIRATIME, 0),
    "rrelatime": (MOUNT_ATTR__ATIME, 0), "rnorelatime": (0, 0),
    "rnoatime": (MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME), "ratime": (MOUNT_ATTR__ATIME, 0),
    "rstrictatime": (MOUNT_ATTR__ATIME, MOUNT_ATTR_STRICTATIME), "rnostrictatime": (0, 0),
    "rnosymfollow": (0, MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (MOUNT_ATTR_NOSYMFOLLOW, 0),
}

DEFAULT_DEVICES = (  # path, major, minor
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_SYMLINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))

PROC_SUPER_MAGIC = procfs.PROC_SUPER_MAGIC
SYSFS_MAGIC = 0x62656572


class MountOptions:
    """A mount's options split the way mount(2) and mount_setattr(2) want them."""

    def __init__(self, options: list[str]) -> None:
        self.flags = 0
        self.clear = 0
        self.propagation: list[int] = []
        self.rec_set = 0
        self.rec_clear = 0
        self.data: list[str] = []
        self.tmpcopyup = False
        self.idmap = False  # "idmap" or "ridmap" (idmapped.py)
        self.idmap_recursive = False  # "ridmap": the mounts below an rbind are mapped too
        for opt in options:
            if opt in _FLAGS:
                clear, bit = _FLAGS[opt]
                if clear:
                    self.flags &= ~bit
                    self.clear |= bit
                else:
                    self.flags |= bit
            elif opt in _PROPAGATION:
                self.propagation.append(_PROPAGATION[opt])
            elif opt in _REC_ATTRS:
                clear, set_ = _REC_ATTRS[opt]
                self.rec_clear |= clear
                self.rec_set |= set_
            elif opt == "tmpcopyup":
                self.tmpcopyup = True
            elif opt in ("idmap", "ridmap"):
                self.idmap = True
                self.idmap_recursive = opt == "ridmap"
            else:
                self.data.append(opt)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & lsys.MS_BIND)


def bind_source(m: Mount, bundle: str) -> str | None:
    """The host path a bind mount binds (relative to the bundle), None for other mounts."""
    if m.type != "bind" and "bind" not in m.options and "rbind" not in m.options:
        return None
    return m.source if os.path.isabs(m.source) else os.path.join(bundle, m.source)


# runc 1.1.5's checkProcMount: below /proc only these may be mount destinations (the files
# lxcfs emulates), and /proc itself only for a proc file system. Types it does not check:
UNCHECKED_IN_PROC = ("proc", "sysfs", "mqueue", "tmpfs", "cgroup")
PROC_DESTINATIONS = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
                     "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
                     "/proc/net/dev", "/proc/sys/kernel/ns_last_pid")


class RootfsBuilder:
    """Builds the container filesystem in the init's mount namespace, then pivots into it.

    With `host_fds` (a user namespace: see mount_sources.py) the rootfs and the bind sources
    are never looked up by path: they come as fds opened on the host's side, and are cloned
    and attached from those (open_tree + move_mount)."""

    def __init__(self, spec: Spec, in_userns: bool, cgroup_mounter=None, host_ns: bool = False,
                 host_fds=None) -> None:
        self.spec = spec
        self.rootfs = spec.root_path
        self.in_userns = in_userns
        self.host_ns = host_ns  # no mount namespace of its own: every mount is visible outside
        self.cgroup_mounter = cgroup_mounter  # callable(dest_fd, mount) for "cgroup" mounts
        self.host_fds = host_fds  # mount_sources.HostFds or None
        self._idmapper: idmapped.Idmapper | None = None  # (made on the first idmapped bind)
        self.rootfd = -1
        self._null = -1  # the verified /dev/null that masks files (see _dev_null)
        # mounts whose "ro"/"rro" waits for finish(): (fd of the mount, recursive, mount)
        self._ro_later: list[tuple[int, bool, Mount]] = []

    # --- phase 1: before the mounts ------------------------------------------------------------
    def prepare(self) -> None:
        if not self.host_ns:
            prop = self.spec.linux.rootfs_propagation
            flags = _PROPAGATION.get(prop, lsys.MS_SLAVE | lsys.MS_REC)
            # Everything we do from here on stays in our namespace (never leaks to the host) ...
            lsys.mount(None, "/", None, flags)
            # ... and pivot_root refuses a new root whose parent mount is shared.
            self._make_parent_private(paths.fd_path(self.host_fds.parent) if self.host_fds
                                      else mount_point_of(self.rootfs))
        if self.host_fds is not None:
            # the same bind, from the fd: the attached tree's fd is the new mount's root
            root = self.host_fds.rootfs
            self.rootfd = _attach(lsys.clone_tree(root, True), root)
            return
        # In the host's namespace this bind is the one handle `delete` detaches (with all the
        # container's mounts under it); it also confines a read-only root to the container.
        lsys.mount(self.rootfs, self.rootfs, None, lsys.MS_BIND | lsys.MS_REC)
        self.rootfd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    @staticmethod
    def _make_parent_private(mnt: str) -> None:
        try:
            lsys.mount(None, mnt, None, lsys.MS_PRIVATE)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise

    # --- phase 2: config mounts and devices ------------------------------------------------------
    def mount_all(self) -> None:
        for m in self.spec.mounts:
            try:
                self.mount_one(m)
            except OSError as e:
                raise RuntimeFailure(
                    f"config.json: mounts[{m.index}]: mount {m.source or m.type} to "
                    f"{m.destination}: {e.strerror or e}") from None

    def mount_one(self, m: Mount) -> None:
        opts = MountOptions(m.options)
        fstype = m.type
        if fstype == "bind":
            opts.flags |= lsys.MS_BIND
        if fstype == "cgroup" and not opts.is_bind:
            fd = paths.mkdir_all(self.rootfd, m.destination)
            try:
                if self.cgroup_mounter is None:
                    raise OSError(errno.ENOTSUP, "no cgroup support")
                self.cgroup_mounter(self, fd, m, opts)
            finally:
                os.close(fd)
            return
        proc_checked = opts.is_bind or fstype not in UNCHECKED_IN_PROC
        if proc_checked:  # before a mount point is made; again on its fd (it may have moved)
            self._refuse_in_proc(m, paths.resolve_in_root(self.rootfd, m.destination))
        if opts.is_bind:
            self._mount_bind(m, opts)
            return
        if fstype in ("proc", "sysfs"):
            self._ordinary_dir_only(m.destination, fstype)
        dest_fd, mode = self._mountpoint_dir(m.destination)
        if proc_checked:
            self._refuse_in_proc(m, paths.path_in_root(self.rootfd, dest_fd))
        if mode is not None and (fstype == "tmpfs" or opts.tmpcopyup):
            # a tmpfs over a directory takes its mode, unless the options give one (a later
            # mode= wins): runc 1.2 does this (1.1 chmods, overriding mode=)
            opts.data.insert(0, f"mode={mode:04o}")
        ro_later = self._defer_read_only(m, opts)
        try:
            target = paths.fd_path(dest_fd)
            if opts.tmpcopyup:
                self._tmpcopyup(m, dest_fd, opts)
            else:
                flags = opts.flags & ~lsys.MS_REMOUNT
                data = ",".join(opts.data)
                if self.spec.linux.mount_label and fstype in ("tmpfs", "mqueue", "devpts", "shm"):
                    from ..process import lsm_enabled
                    if lsm_enabled()[1]:  # runc's label.FormatMountLabel; else a warning (create)
                        label = f'context="{self.spec.linux.mount_label}"'
                        data = f"{data},{label}" if data else label
                try:
                    lsys.mount(m.source or fstype, target, fstype or None, flags, data)
                except PermissionError:
                    if fstype != "sysfs" or not self.in_userns:
                        raise
                    self._bind_host_sysfs(target, m.destination, flags)
            # the fd still points at the directory under the new mount: reopen to apply
            if opts.propagation or opts.rec_set or opts.rec_clear or ro_later is not None:
                top = paths.open_in_root(self.rootfd, m.destination)
                try:
                    self._post(top, opts)
                    if ro_later is not None:
                        self._ro_later.append((top, ro_later, m))
                        top = -1
                finally:
                    if top >= 0:
                        os.close(top)
        finally:
            os.close(dest_fd)

    def _mountpoint_dir(self, dest: str) -> tuple[int, int | None]:
        """An fd of the directory `dest` in the root, made if missing; and its mode if it was
        there already."""
        try:
            fd = paths.open_in_root(self.rootfd, dest, paths.O_PATH | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            return paths.mkdir_all(self.rootfd, dest), None
        return fd, stat.S_IMODE(os.fstat(fd).st_mode)

    @staticmethod
    def _defer_read_only(m: Mount, opts: MountOptions) -> bool | None:
        """runc mounts a tmpfs and whatever is mounted on /dev writable and makes them
        read-only at the end (finalizeRootfs): what goes under them (/dev/pts, the devices,
        /dev/console, mount points) must be made first. Takes "ro" (and "rro") out of `opts`
        for such a mount; returns None if there is nothing to defer, else whether the
        read-only flag is to be applied recursively. A read-only bind stays read-only from
        the start (as in runc): a mount point under it would be made in the host's directory."""
        dev = os.path.normpath("/" + m.destination.lstrip("/")) == "/dev"
        if not (m.type == "tmpfs" or opts.tmpcopyup or dev):
            return None
        recursive = bool(opts.rec_set & MOUNT_ATTR_RDONLY)
        if not (recursive or opts.flags & lsys.MS_RDONLY):
            return None
        opts.flags &= ~lsys.MS_RDONLY
        opts.rec_set &= ~MOUNT_ATTR_RDONLY
        return recursive

    def _refuse_in_proc(self, m: Mount, where: str | None) -> None:
        """runc 1.1.5's checkProcMount on the destination resolved in the root (`where`):
        nothing may be mounted below /proc but on the files lxcfs emulates, and on /proc
        itself only a bind of a procfs. An over-mounted /proc file would take the writes
        meant for the container's own (CVE-2025-52881; runp writes below a procfs of its own
        anyway, linux/procfs.py). Checked before the mount point is made and again on it,
        which is what the mount goes through."""
        if where is None or not (where == "/proc" or where.startswith("/proc/")):
            return
        at = f"config.json: mounts[{m.index}].destination: {m.destination}"
        if where == "/proc":
            if not self._source_is_proc(m):
                raise RuntimeFailure(f"{at}: cannot be mounted on /proc because it is not of "
                                     "type proc")
            return
        if where not in PROC_DESTINATIONS:
            how = "" if where == os.path.normpath("/" + m.destination.lstrip("/")) else \
                f" (it resolves to {where} in the rootfs)"
            raise RuntimeFailure(f"{at}: cannot be mounted because it is inside /proc{how}")

    def _source_is_proc(self, m: Mount) -> bool:
        src = bind_source(m, self.spec.bundle)
        if src is None:
            return False
        if self.host_fds is not None:
            got = self.host_fds.sources.get(m.index)
            if not isinstance(got, tuple):
                return False
            fd = os.dup(got[0])
        else:
            try:
                fd = os.open(src, paths.O_PATH | os.O_CLOEXEC)
            except OSError:
                return False
        try:
            return lsys.fstatfs_type(fd) == PROC_SUPER_MAGIC
        finally:
            os.close(fd)

    def _ordinary_dir_only(self, dest: str, fstype: str) -> None:
        """procfs and sysfs go on an ordinary directory, never through a symlink in its place
        (runc does the same: a /proc that leads elsewhere hides the real one, CVE-2019-19921)."""
        parent, name = os.path.split(dest.rstrip("/"))
        if not name:
            return
        try:
            pfd = paths.open_in_root(self.rootfd, parent)
        except FileNotFoundError:
            return
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        finally:
            os.close(pfd)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, f"filesystem {fstype} must be mounted on an ordinary "
                                         "directory, not a symlink or file")

    def _mount_bind(self, m: Mount, opts: MountOptions) -> None:
        """A bind mount of a host path, or of what host_fds holds for it; idmapped if asked
        (idmapped.py: a detached copy with the mapping, made here when we are host root)."""
        src: str | int
        tree = False
        if self.host_fds is not None:
            src, tree = self.host_fds.source(m.index)
        else:
            src = bind_source(m, self.spec.bundle)
            if m.idmapped():
                if self.in_userns:  # not host root (with a new mount namespace: host_fds)
                    raise OSError(errno.EPERM, "an idmapped mount in a user namespace needs a "
                                               "mount namespace of the container's own")
                if self._idmapper is None:
                    from . import idmapped  # (only for idmapped mounts: 0.3 ms)
                    self._idmapper = idmapped.Idmapper()
                src = self._idmapper.clone(src, m, bool(opts.flags & lsys.MS_REC),
                                           opts.idmap_recursive)
                tree = True
        try:
            # a path is followed on the host side: the source is trusted
            st = os.stat(src) if isinstance(src, str) else os.fstat(src)
            dest_fd = paths.make_mountpoint(self.rootfd, m.destination, stat.S_ISDIR(st.st_mode))
            try:
                self._refuse_in_proc(m, paths.path_in_root(self.rootfd, dest_fd))
            except BaseException:
                os.close(dest_fd)
                raise
        except BaseException:
            if tree:
                os.close(src)
            raise
        try:
            self._bind(src, dest_fd, opts, m.destination, tree)
        finally:
            os.close(dest_fd)

    def release_sources(self) -> None:
        """Close what the bind mounts were made from, once they are all made."""
        if self.host_fds is not None:
            self.host_fds.close()
        if self._idmapper is not None:
            self._idmapper.close()
            self._idmapper = None

    def _bind(self, src: str | int, dest_fd: int, opts: MountOptions, dest: str,
              tree: bool = False) -> None:
        """Bind `src` onto dest_fd, then apply the options to the new mount. `src` is a host
        path, an fd from host_fds (cloned here) or, with `tree`, a detached copy to attach as
        it is (an idmapped one; closed here)."""
        if isinstance(src, int):
            top = _attach(src if tree else lsys.clone_tree(src, bool(opts.flags & lsys.MS_REC)),
                          dest_fd)
        else:
            lsys.mount(src, paths.fd_path(dest_fd), None, opts.flags & (lsys.MS_BIND | lsys.MS_REC))
            # dest_fd is the directory *under* the new mount; a fresh lookup reaches its root
            top = paths.open_in_root(self.rootfd, dest)
        try:
            extra = opts.flags & ~(lsys.MS_BIND | lsys.MS_REC | lsys.MS_REMOUNT)
            if extra or opts.clear:
                flags = lsys.MS_BIND | lsys.MS_REMOUNT | extra
                if self.in_userns:
                    flags |= _locked_flags(paths.fd_path(top))  # flags we may not clear
                lsys.mount(None, paths.fd_path(top), None, flags)
            self._post(top, opts)
        finally:
            os.close(top)

    def _bind_host_sysfs(self, target: str, dest: str, flags: int) -> None:
        """In a user namespace that does not own the network namespace (rootless, no network
        namespace of its own) the kernel refuses a fresh sysfs: bind the host's /sys instead
        (as crun does; runc's rootless spec asks for that bind itself), with the mount's
        flags (ro, nosuid, ...) on every mount under it, not only the top one."""
        lsys.mount("/sys", target, None, lsys.MS_BIND | lsys.MS_REC)
        attrs = sum(a for ms, a in ((lsys.MS_RDONLY, MOUNT_ATTR_RDONLY), (lsys.MS_NOSUID, MOUNT_ATTR_NOSUID),
                                    (lsys.MS_NODEV, MOUNT_ATTR_NODEV), (lsys.MS_NOEXEC, MOUNT_ATTR_NOEXEC))
                    if flags & ms)
        if attrs:
            top = paths.open_in_root(self.rootfd, dest)
            try:
                lsys.mount_setattr(top, attrs, 0)
            finally:
                os.close(top)

    def _post(self, fd: int, opts: MountOptions) -> None:
        for p in opts.propagation:
            lsys.mount(None, paths.fd_path(fd), None, p)
        if opts.rec_set or opts.rec_clear:
            lsys.mount_setattr(fd, opts.rec_set, opts.rec_clear)

    def _tmpcopyup(self, m: Mount, dest_fd: int, opts: MountOptions) -> None:
        """tmpfs at dest, seeded with dest's old content (podman's --read-only /tmp etc.)."""
        import shutil
        import tempfile
        tmp = tempfile.mkdtemp(prefix="runp-tmpcopyup-")
        mounted = False
        try:
            # writable for the copy ("ro" waits for finish(), as in runc)
            lsys.mount("tmpfs", tmp, "tmpfs", opts.flags & ~lsys.MS_RDONLY, ",".join(opts.data))
            mounted = True
            src = paths.fd_path(dest_fd)
            shutil.copytree(src, tmp, symlinks=True, dirs_exist_ok=True)
            modes = [o for o in opts.data if o.startswith("mode=")]
            if modes:  # copytree gave the root the directory's mode: the options' mode= wins
                os.chmod(tmp, int(modes[-1][5:], 8))
            lsys.mount(tmp, src, None, lsys.MS_MOVE)
            mounted = False
        finally:
            if mounted:
                lsys.umount2(tmp, lsys.MNT_DETACH)
            os.rmdir(tmp)

    def create_devices(self) -> None:
        """Default devices plus linux.devices (mknod, or bind from the host in a user ns)."""
        devs = [(p, "c", ma, mi, 0o666, 0, 0) for p, ma, mi in DEFAULT_DEVICES]
        configured = {d.path for d in self.spec.linux.devices}
        devs = [d for d in devs if d[0] not in configured]
        for d in self.spec.linux.devices:
            mode = d.file_mode if d.file_mode is not None else 0o666
            devs.append((d.path, d.type, d.major, d.minor, mode, d.uid or 0, d.gid or 0))
        if self._dev_is_host_bind():
            return
        for i, (path, typ, major, minor, mode, uid, gid) in enumerate(devs):
            try:
                self._make_device(path, typ, major, minor, mode, uid, gid, strict=path in configured)
            except OSError as e:
                raise RuntimeFailure(f"create device {path}: {e.strerror or e}") from None
        dfd = paths.mkdir_all(self.rootfd, "/dev")
        try:
            for target, link in DEV_SYMLINKS + (("pts/ptmx", "/dev/ptmx"),):
                name = os.path.basename(link)
                if link == "/dev/ptmx":
                    try:  # replace a host-bound or stale ptmx node with the pts one
                        os.unlink(name, dir_fd=dfd)
                    except OSError:
                        pass
                try:
                    os.symlink(target, name, dir_fd=dfd)
                except FileExistsError:
                    pass
            if os.path.exists("/proc/kcore"):
                try:
                    os.symlink("/proc/kcore", "core", dir_fd=dfd)
                except FileExistsError:
                    pass
        finally:
            os.close(dfd)

    def _dev_is_host_bind(self) -> bool:
        for m in self.spec.mounts:
            if m.destination.rstrip("/") == "/dev" and (m.type == "bind" or "bind" in m.options or "rbind" in m.options):
                return True
        return False

    def _make_device(self, path: str, typ: str, major: int, minor: int, mode: int, uid: int, gid: int,
                     strict: bool = False) -> None:
        """mknod (or bind from the host in a user ns). With `strict` (a linux.devices entry), a
        file already at `path` that is not this device is an error (config-linux.md)."""
        parent, name = os.path.split(path)
        pfd = paths.mkdir_all(self.rootfd, parent)
        try:
            if strict:
                _check_existing_device(pfd, name, path, typ, major, minor)
            if self.in_userns:
                fd = paths.create_file(self.rootfd, path)
                try:
                    lsys.mount(path, paths.fd_path(fd), None, lsys.MS_BIND)
                finally:
                    os.close(fd)
                return
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[typ]
            try:
                os.unlink(name, dir_fd=pfd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                raise OSError(errno.EISDIR, "is a directory", path) from None
            os.mknod(name, kind | (mode & 0o7777), os.makedev(major, minor), dir_fd=pfd)
            os.chmod(name, mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def setup_console(self, slave: int) -> None:
        """Bind the pty slave onto /dev/console, never through a symlink (CVE-2025-52565): a
        symlink the image has there is replaced by a regular file (unless /dev is bound from
        elsewhere: then it is an error, we do not unlink what is not ours), and the bind goes
        through an O_NOFOLLOW fd. An existing node (a bound host /dev) is mounted over."""
        dfd = paths.mkdir_all(self.rootfd, "/dev")
        try:
            try:
                if stat.S_ISLNK(os.stat("console", dir_fd=dfd, follow_symlinks=False).st_mode):
                    if self._dev_is_host_bind():
                        raise OSError(errno.ELOOP, "/dev/console is a symlink")
                    os.unlink("console", dir_fd=dfd)
            except FileNotFoundError:
                pass
            try:
                os.close(os.open("console", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o600, dir_fd=dfd))
            except FileExistsError:
                pass
            fd = os.open("console", paths.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        finally:
            os.close(dfd)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
                raise OSError(errno.EEXIST, "/dev/console is a symlink or a directory")
            # (on fds: after pivot_root a /proc/self/fd path is the container's to redirect)
            os.close(_attach(lsys.clone_tree(slave, recursive=False), fd))
        finally:
            os.close(fd)

    # --- phase 3: switch root ---------------------------------------------------------------------
    def pivot(self, no_pivot: bool) -> None:
        if self.host_ns:  # pivot_root would change the root of the whole namespace
            os.fchdir(self.rootfd)
            os.chroot(".")
            os.chdir("/")
        elif no_pivot:
            self._move_root()
        else:
            oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fchdir(self.rootfd)
                lsys.pivot_root(".", ".")
                # the old root is now stacked on "."; detach it without propagating to the host
                os.fchdir(oldroot)
                lsys.mount(None, ".", None, lsys.MS_SLAVE | lsys.MS_REC)
                lsys.umount2(".", lsys.MNT_DETACH)
            finally:
                os.close(oldroot)
            os.chdir("/")
        # linux.rootfsPropagation is the new root's own propagation (runc applies it here too):
        # the root mount is private until now, so "shared" makes a peer group of its own.
        prop = self.spec.linux.rootfs_propagation
        if prop and prop in _PROPAGATION and not prop.endswith("private"):
            lsys.mount(None, "/", None, _PROPAGATION[prop])
        os.close(self.rootfd)
        self.rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def _move_root(self) -> None:
        """--no-pivot: move the rootfs onto "/" and chroot into it. In a mount namespace of the
        container's own the host's mounts left under it are detached (nopivot.py); in one
        joined by path they are someone else's, and stay."""
        ns = self.spec.linux.namespace("mount")
        own = ns is not None and not ns.path
        proc = -1
        try:
            if own:
                proc = os.open("/proc", paths.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                if lsys.fstatfs_type(proc) != PROC_SUPER_MAGIC:
                    raise OSError(errno.ENOENT, "/proc is not a procfs")
                # A shared "/" would pass the moved tree on to its peers (the host's "/" with
                # rootfsPropagation "rshared": the container's mounts would appear there)
                lsys.mount(None, "/", None, lsys.MS_SLAVE)
            os.fchdir(self.rootfd)
            lsys.mount(".", "/", None, lsys.MS_MOVE)
            if own:
                from . import nopivot
                nopivot.detach_host_mounts(proc, self.rootfd)
        except OSError as e:
            raise RuntimeFailure(f"--no-pivot: {e.strerror or e}") from None
        finally:
            if proc >= 0:
                os.close(proc)
        os.chroot(".")
        os.chdir("/")

    # --- phase 4: after the switch -----------------------------------------------------------------
    def finish(self) -> None:
        """Deferred read-only mounts, read-only paths, masked paths, read-only root."""
        lx = self.spec.linux
        self._reopen_dev_null()
        self._read_only_now()
        for p in lx.readonly_paths:
            self._readonly(p)
        try:
            for p in lx.masked_paths:
                self._mask(p)
        finally:
            if self._null >= 0:
                os.close(self._null)
                self._null = -1
        if self.spec.root_readonly:
            lsys.mount(None, "/", None, lsys.MS_BIND | lsys.MS_REMOUNT | lsys.MS_RDONLY
                       | _locked_flags("/"))
        os.close(self.rootfd)
        self.rootfd = -1

    def _read_only_now(self) -> None:
        """The "ro" that mount_one deferred, on exactly the mounts it made (held by fd, so a
        mount stacked on one later, or a path changed since, cannot redirect it)."""
        todo, self._ro_later = self._ro_later, []
        try:
            for fd, recursive, m in todo:
                try:
                    lsys.mount_setattr(fd, MOUNT_ATTR_RDONLY, 0, recursive)
                except OSError as e:
                    raise RuntimeFailure(f"config.json: mounts[{m.index}]: make {m.destination} "
                                         f"read-only: {e.strerror or e}") from None
        finally:
            for fd, _, _ in todo:
                os.close(fd)

    # After pivot_root "/proc/self/fd/N" would be resolved in the container's /proc, where the
    # config may have mounted anything (a directory of symlinks over /proc/1/fd: the mask or
    # the read-only bind lands elsewhere, and /proc/sysrq-trigger or /proc/sys stays open,
    # CVE-2025-31133 class). So these mounts are made on fds alone: open_tree, fsmount,
    # move_mount and mount_setattr take no path.
    def _readonly(self, path: str) -> None:
        try:
            fd = paths.open_in_root(self.rootfd, path)
        except FileNotFoundError:
            return
        try:
            tree = lsys.clone_tree(fd, recursive=True)
            try:  # only the top mount read-only, as runc's bind + remount
                lsys.mount_setattr(tree, MOUNT_ATTR_RDONLY, 0, recursive=False)
            except BaseException:
                os.close(tree)
                raise
            os.close(_attach(tree, fd))
        except OSError as e:
            raise RuntimeFailure(f"config.json: linux.readonlyPaths: {path}: {e.strerror or e}") from None
        finally:
            os.close(fd)

    def _mask(self, path: str) -> None:
        try:
            fd = paths.open_in_root(self.rootfd, path)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if paths.is_dir_fd(fd):
                tree = lsys.new_mount("tmpfs", {"source": "tmpfs"}, MOUNT_ATTR_RDONLY)
            else:
                tree = lsys.clone_tree(self._dev_null(), recursive=False)
            os.close(_attach(tree, fd))
        except OSError as e:
            raise RuntimeFailure(f"config.json: linux.maskedPaths: {path}: {e.strerror or e}") from None
        finally:
            os.close(fd)

    def _reopen_dev_null(self) -> None:
        """Stdio that is a null device (the caller's, the host's /dev/null: containerd's shim
        gives detached tasks that stdin) becomes the container's own /dev/null, as runc's
        reOpenDevNull does: criu cannot checkpoint a file on a mount the container lacks
        ("Can't lookup mount=N for fd=0 path=/dev/null", seen with `ctr task checkpoint`)."""
        mine = [fd for fd in (0, 1, 2) if _is_null(fd)]
        if not mine:
            return
        try:
            null = os.open(paths.fd_path(self._dev_null()), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return  # no /dev/null (or /proc) in the container: the caller's stays
        try:
            for fd in mine:
                os.dup2(null, fd)
        finally:
            os.close(null)

    def _dev_null(self) -> int:
        """An O_PATH fd of the container's /dev/null (resolved in the root), verified to be the
        null device: a /dev/null that leads to another file would be bound over every masked
        file, exposing what the attacker chose instead of nothing (CVE-2025-31133)."""
        if self._null < 0:
            try:
                fd = paths.open_in_root(self.rootfd, "/dev/null")
            except OSError as e:
                raise OSError(e.errno, f"/dev/null: {e.strerror}") from None
            st = os.fstat(fd)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
                os.close(fd)
                raise OSError(errno.EINVAL, "/dev/null is not the null device (char 1:3)")
            self._null = fd
        return self._null


def _is_null(fd: int) -> bool:
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def _check_existing_device(pfd: int, name: str, path: str, typ: str, major: int, minor: int) -> None:
    try:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if typ == "p":
        ok = stat.S_ISFIFO(st.st_mode)
    else:
        ok = (stat.S_ISBLK(st.st_mode) if typ == "b" else stat.S_ISCHR(st.st_mode)) \
            and st.st_rdev == os.makedev(major, minor)
    if not ok:
        raise OSError(errno.EEXIST, "a file that is not this device is already there", path)


def top_mount_id(path: str) -> int | None:
    """The id of the topmost mount on exactly `path` in our namespace, None if it is no mount
    point. (A container without a mount namespace is built on such a bind of its root.)"""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ", 5)
            if _unescape(fields[4].decode()) == path:
                found = int(fields[0])  # later lines are mounted on top of earlier ones
    return found


def detach_rootfs(path: str, mount_id: int) -> None:
    """Lazily unmount the container's bind of its root (and everything mounted under it) from
    the namespace it shared with the host, if that bind is still the top mount there."""
    if top_mount_id(path) == mount_id:
        lsys.umount2(os.path.realpath(path), lsys.MNT_DETACH)


def _attach(tree: int, dest_fd: int) -> int:
    """Attach a detached copy (lsys.clone_tree) onto dest_fd: a bind through fds. Returns
    the copy's fd, now the new mount's root; closes it on failure (unmounting the copy)."""
    try:
        lsys.attach_tree(tree, dest_fd)
    except BaseException:
        os.close(tree)  # unmounts the detached copy
        raise
    return tree


def mount_point_of(path: str) -> str:
    """The mount point containing `path` (from /proc/self/mountinfo)."""
    best = "/"
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = _unescape(line.split(b" ", 5)[4].decode())
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) > len(best):
                best = mp
    return best


def _locked_flags(path: str) -> int:
    """Flags of the mount at `path` that a remount inside a user namespace must keep."""
    st = os.statvfs(path)
    out = 0
    for st_flag, ms in ((os.ST_RDONLY, 0), (os.ST_NOSUID, lsys.MS_NOSUID), (os.ST_NODEV, lsys.MS_NODEV),
                        (os.ST_NOEXEC, lsys.MS_NOEXEC), (os.ST_NOATIME, lsys.MS_NOATIME),
                        (os.ST_NODIRATIME, lsys.MS_NODIRATIME), (os.ST_RELATIME, lsys.MS_RELATIME)):
        if st.f_flag & st_flag:
            out |= ms
    return out


def check_idmapped(spec: Spec) -> None:
    """What config.md requires of idmapped mounts, checked in `create` before anything is
    made: bind mounts only, both mappings or none, and none only with a user namespace (whose
    mappings the mount then takes)."""
    from ..errors import ConfigError
    for m in spec.mounts:
        if not m.idmapped():
            continue
        where = f"mounts[{m.index}]"
        if bind_source(m, spec.bundle) is None:
            raise ConfigError(where, "idmapped mounts are only supported for bind mounts")
        if bool(m.uid_mappings) != bool(m.gid_mappings):
            raise ConfigError(where, "uidMappings and gidMappings must be given together")
        if not m.uid_mappings and spec.linux.namespace("user") is None:
            raise ConfigError(where, "an idmapped mount without uidMappings and gidMappings "
                                     "takes the container's, but it has no user namespace")


IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                         "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                         "kernel.shm_rmid_forced"})


def check_sysctls(spec: Spec) -> None:
    """Accept only sysctls of a namespace the container has (runc's rule): anything else
    (kernel.core_pattern, vm.*, net.* in the host's network namespace) would be written to
    the host's kernel. Runs in `create` before anything is built."""
    from ..errors import ConfigError
    lx = spec.linux
    for key in lx.sysctl:
        name, where = key.replace("/", "."), f"linux.sysctl.{key}"
        if name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
            if lx.namespace("ipc") is None:
                raise ConfigError(where, "is not allowed in the host's ipc namespace")
        elif name.startswith("net."):
            if _host_netns(spec):
                raise ConfigError(where, "is not allowed in the host's network namespace")
        elif name == "kernel.domainname" and lx.namespace("uts") is not None:
            pass
        elif name == "kernel.hostname" and lx.namespace("uts") is not None:
            raise ConfigError(where, 'is not allowed: it conflicts with the "hostname" field')
        else:
            raise ConfigError(where, "is not in a separate kernel namespace")


def _host_netns(spec: Spec) -> bool:
    ns = spec.linux.namespace("network")
    if ns is None:
        return True
    if not ns.path:
        return False
    try:
        a, b = os.stat(ns.path), os.stat("/proc/self/ns/net")
    except OSError:
        return False  # joining it fails later, with the path in the message
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def write_sysctls(sysctl: dict[str, str]) -> None:
    """linux.sysctl, written under /proc/sys of our own procfs (procfs.py): the values apply to
    the namespaces we are in, and nothing mounted over the container's /proc/sys can redirect
    them (CVE-2025-52881)."""
    for key, value in sysctl.items():
        procfs.write_or_fail(f"sys/{key.replace('.', '/')}", value, f"config.json: linux.sysctl.{key}")
