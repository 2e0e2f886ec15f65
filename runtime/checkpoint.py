"""`runp checkpoint` / `runp restore`: a running container saved to CRIU images and brought back,
as runc does it (libcontainer's Checkpoint/Restore, one `criu swrk` request each: runtime/criu.py).

What runc tells criu, runp tells it too:
- the mounts criu must not dump but take from outside: every bind mount of the config (restored
  from its source), the cgroup binds (runp binds the container's own cgroup directory where
  there is no cgroup namespace; restored from the new container's), masked files (bound from
  /dev/null) and device nodes;
- the namespaces the container joined rather than made: network and pid as external
  namespaces (inherited fds on restore), the others joined on restore (join_ns); the network
  namespace is never restored (empty_ns), runp does not configure interfaces;
- the cgroup: criu freezes through it (freeze_cgroup) and, on restore, runs inside the new
  container's cgroup (made and limited from the config first); --manage-cgroups-mode passes on;
- the container's stdio: descriptors.json in the image directory lists the targets of the
  init's fds 0-2 at checkpoint time (runc's format, a JSON list of strings); on restore each
  pipe among them is replaced by the restoring runp's own fd of the same number (inherit_fd),
  and a pty (orphan_pts_master) comes back as a new master sent to --console-socket.
Restore runs the prestart and createRuntime hooks when criu has made the namespaces
(its "setup-namespaces" notification, as runc), then records the restored init in the state
directory like `create` does, so state, kill, exec, ps and delete work on it.
Where criu cannot work at all, both commands fail with criu.problem()'s one line.
"""
from __future__ import annotations

import os

from .errors import RuntimeFailure

# runc's flags (1.1.5, plus --link-remap, --tcp-skip-in-flight of later releases)
CHECKPOINT_FLAGS: dict = {
    "image-path": (("--image-path",), True), "work-path": (("--work-path",), True),
    "parent-path": (("--parent-path",), True), "leave-running": (("--leave-running",), False),
    "tcp-established": (("--tcp-established",), False),
    "tcp-skip-in-flight": (("--tcp-skip-in-flight",), False),
    "link-remap": (("--link-remap",), False),
    "ext-unix-sk": (("--ext-unix-sk",), False), "shell-job": (("--shell-job",), False),
    "lazy-pages": (("--lazy-pages",), False), "status-fd": (("--status-fd",), True),
    "page-server": (("--page-server",), True), "file-locks": (("--file-locks",), False),
    "pre-dump": (("--pre-dump",), False),
    "manage-cgroups-mode": (("--manage-cgroups-mode",), True),
    "empty-ns": (("--empty-ns",), "list"), "auto-dedup": (("--auto-dedup",), False),
    "help": (("--help", "-h"), False),
}
RESTORE_FLAGS: dict = {
    "console-socket": (("--console-socket",), True), "image-path": (("--image-path",), True),
    "work-path": (("--work-path",), True), "tcp-established": (("--tcp-established",), False),
    "ext-unix-sk": (("--ext-unix-sk",), False), "shell-job": (("--shell-job",), False),
    "file-locks": (("--file-locks",), False),
    "manage-cgroups-mode": (("--manage-cgroups-mode",), True),
    "bundle": (("--bundle", "-b"), True), "detach": (("--detach", "-d"), False),
    "pid-file": (("--pid-file",), True), "no-subreaper": (("--no-subreaper",), False),
    "no-pivot": (("--no-pivot",), False), "empty-ns": (("--empty-ns",), "list"),
    "auto-dedup": (("--auto-dedup",), False), "lazy-pages": (("--lazy-pages",), False),
    "lsm-profile": (("--lsm-profile",), True), "lsm-mount-context": (("--lsm-mount-context",), True),
    "help": (("--help", "-h"), False),
}

DESCRIPTORS = "descriptors.json"
CLONE_NEWNET = 0x40000000
CG_MODES = ("soft", "full", "strict", "ignore")
# criu reads a configuration file that overrides RPC options (criu >= 3.11); the annotation
# org.criu.config names another one ("" for none), as with runc (which reads runc.conf)
CRIU_CONFIG = "/etc/criu/runp.conf"
# (runc asks criu's version before it declares external network (criu 3.11) and pid (3.15)
# namespaces or sets an LSM profile (3.16); runp needs a criu of 3.15 or later anyway, Debian
# 12 has 3.17, and an older one refuses what it does not know: no extra criu run to ask)


class Options:
    """The flags of one checkpoint or restore, checked as runc checks them."""

    def __init__(self, flags: dict, criu: str | None) -> None:
        self.flags = flags
        self.criu = criu
        self.image_path = os.path.abspath(flags.get("image-path") or "checkpoint")  # runc: $PWD/checkpoint
        self.work_path = flags.get("work-path") or ""
        self.parent_path = flags.get("parent-path") or ""
        mode = flags.get("manage-cgroups-mode") or ""
        if mode and mode not in CG_MODES:
            raise RuntimeFailure(f"invalid --manage-cgroups-mode {mode!r} (soft, full, strict "
                                 "or ignore)")
        self.cg_mode = mode
        empty = CLONE_NEWNET  # as runc: runp does not manage network devices
        for ns in flags.get("empty-ns") or []:
            if ns != "network":
                raise RuntimeFailure(f'namespace "{ns}" is not supported')
        self.empty_ns = empty

    def on(self, name: str) -> bool:
        return bool(self.flags.get(name))


def _criu_path(criu: str | None, doing: str) -> str:
    from . import criu as criu_mod
    path = criu_mod.find(criu)
    if path is None:
        raise RuntimeFailure(f"{doing}: {criu_mod.problem(criu)}")
    return path


def _common_opts(r, spec, opts: Options, image_fd: int, work_fd: int, log_file: str):
    """criu_opts both requests share."""
    o = r.criu_opts(images_dir_fd=image_fd, log_level=4, log_file=log_file,
                    manage_cgroups=True, notify_scripts=True, shell_job=opts.on("shell-job"),
                    tcp_established=opts.on("tcp-established"), ext_unix_sk=opts.on("ext-unix-sk"),
                    file_locks=opts.on("file-locks"), empty_ns=opts.empty_ns,
                    orphan_pts_master=True, auto_dedup=opts.on("auto-dedup"),
                    lazy_pages=opts.on("lazy-pages"))
    if work_fd >= 0:
        o.work_dir_fd = work_fd
    config = spec.annotations.get("org.criu.config", None)
    if config is None:
        o.config_file = CRIU_CONFIG
    elif config:
        o.config_file = config
    if opts.cg_mode:
        o.manage_cgroups_mode = getattr(r, opts.cg_mode.upper())
    return o


def _open_dir(path: str, flag: str, make: bool = True) -> int:
    try:
        if make:
            os.makedirs(path, 0o700, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeFailure(f"{flag} {path}: {e.strerror}") from None


def _failed(doing: str, criu: str | None, what: str, resp, log_path: str) -> RuntimeFailure:
    """criu said no (resp) or died without an answer (resp None): where `criu check` fails,
    that is the reason (one line with what to install); else criu's own, from its log."""
    from .criu import log_reason, problem
    why = problem(criu)
    if why is not None:
        return RuntimeFailure(f"{doing}: {why}")
    if resp is None:
        return RuntimeFailure(f"{doing}: criu failed: type {what}: it exited without an answer "
                              f"(log file: {log_path})")
    why = log_reason(log_path) or resp.cr_errmsg or f"errno {resp.cr_errno}"
    return RuntimeFailure(f"{doing}: criu failed: type {what}: {why} (log file: {log_path})")


def _cgroup_binds(spec, cgroup: dict) -> list[tuple[str, str]]:
    """(mount point in the container, host directory) of the binds runp made for "cgroup"
    mounts without a cgroup namespace (runtime/linux/cgroup_mount.py)."""
    from .linux.namespaces import wants_new
    if not cgroup or wants_new(spec.linux.namespaces, "cgroup"):
        return []
    out: list[tuple[str, str]] = []
    for m in spec.mounts:
        if m.type != "cgroup" or "bind" in m.options or "rbind" in m.options:
            continue
        dest = os.path.normpath(m.destination)
        if cgroup.get("mode") == "v2":
            if cgroup.get("unified"):
                out.append((dest, cgroup["unified"]))
            continue
        from .linux.cgroups.common import v1_mounts
        paths = cgroup.get("paths") or {}
        for mnt, _root, ctrls in v1_mounts():
            d = next((paths[c] for c in ctrls if c in paths), None)
            if d:
                out.append((f"{dest}/{os.path.basename(mnt)}", d))
    return out


def _external_mounts(spec, rootfs: str) -> list[tuple[str, str]]:
    """(mount point, host source) of config bind mounts and device nodes."""
    from .linux.mounts import DEFAULT_DEVICES, bind_source
    out = []
    for m in spec.mounts:
        src = bind_source(m, spec.bundle)
        if src is not None:
            out.append((os.path.normpath(m.destination), src))
    for path in [d[0] for d in DEFAULT_DEVICES] + [d.path for d in spec.linux.devices]:
        out.append((os.path.normpath(path), path))
    return out


# --- checkpoint ------------------------------------------------------------------------------

def checkpoint(root: str, container_id: str, criu: str | None, flags: dict | None = None) -> None:
    from . import criu as criu_mod
    from .container import Container
    opts = Options(flags or {}, criu)
    c = Container(root, container_id)
    status = c.status()
    if status in ("created", "stopped", "creating"):
        raise RuntimeFailure(f"container {container_id} cannot be checkpointed in {status} state")
    path = _criu_path(criu, f"cannot checkpoint container {container_id}")
    r = criu_mod.rpc()
    spec, st = c.spec(), c.state
    parent = opts.parent_path
    image_fd = _open_dir(opts.image_path, "--image-path")
    fds = [image_fd]
    try:
        if parent:
            if os.path.isabs(parent):
                raise RuntimeFailure("--parent-path must be relative")
            if not os.path.isdir(os.path.join(opts.image_path, parent)):
                raise RuntimeFailure(f"invalid --parent-path: {os.path.join(opts.image_path, parent)}"
                                     ": not a directory")
        work_fd = _open_dir(opts.work_path, "--work-path") if opts.work_path else -1
        if work_fd >= 0:
            fds.append(work_fd)
        o = _common_opts(r, spec, opts, image_fd, work_fd, "dump.log")
        o.root = st.rootfs
        o.pid = st.pid
        o.leave_running = opts.on("leave-running")
        o.tcp_skip_in_flight = opts.on("tcp-skip-in-flight")
        o.link_remap = opts.on("link-remap")
        for ns_type, key in (("network", "net"), ("pid", "pid")):
            ns = spec.linux.namespace(ns_type)
            if ns is not None and ns.path:
                o.external.append(f"{key}[{os.stat(ns.path).st_ino}]:{_ns_key(key)}")
        freezer = (st.cgroup.get("paths") or {}).get("freezer") or st.cgroup.get("unified")
        if freezer:
            o.freeze_cgroup = freezer
        if opts.flags.get("page-server"):
            addr, _, port = opts.flags["page-server"].rpartition(":")
            if not addr or not port.isdigit():
                raise RuntimeFailure("Use --page-server ADDRESS:PORT to specify page server")
            o.ps.address, o.ps.port = addr.strip("[]"), int(port)
        if parent:
            o.parent_img = parent
            o.track_mem = True
        status_fd = int(opts.flags.get("status-fd") or -1)
        pre = opts.on("pre-dump")
        if not pre:
            for dest in dict(_external_mounts(spec, st.rootfs) + _cgroup_binds(spec, st.cgroup)):
                o.ext_mnt.add(key=dest, val=dest)
            for p in spec.linux.masked_paths:
                try:
                    import stat as stat_mod
                    mode = os.stat(f"/proc/{st.pid}/root/{p}").st_mode
                except OSError:
                    continue
                if not stat_mod.S_ISDIR(mode):
                    o.ext_mnt.add(key=p, val="/dev/null")
            _write_descriptors(opts.image_path, st.pid)

        def notify(script: str, pid: int, _fds: list[int]) -> None:
            if script == "status-ready" and status_fd >= 0:
                try:
                    os.write(status_fd, b"\0")
                finally:
                    os.close(status_fd)

        kind = "PRE_DUMP" if pre else "DUMP"
        req = r.criu_req(type=getattr(r, kind), opts=o)
        log_path = os.path.join(opts.work_path or opts.image_path, "dump.log")
        swrk = criu_mod.Swrk(path)
        try:
            resp = swrk.call(req, notify)
        except criu_mod.CriuError:
            resp = None
        finally:
            swrk.close()
        if resp is None or not resp.success:
            raise _failed(f"cannot checkpoint container {container_id}", criu, kind, resp, log_path)
    finally:
        for fd in fds:
            os.close(fd)
    if not (opts.on("leave-running") or pre):
        # criu killed the tree: the container is gone, as with runc (which destroys it)
        c.wait_stopped(timeout=10)
        c.delete(force=True)


def _ns_key(key: str) -> str:
    return f"extRoot{key.capitalize()}NS"


def _write_descriptors(image_path: str, pid: int) -> None:
    from . import jsonlite
    from .state import write_atomic
    fds = []
    for n in range(3):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{n}"))
        except OSError:
            fds.append("/dev/null")
    write_atomic(os.path.join(image_path, DESCRIPTORS), jsonlite.dumps(fds).encode(), 0o600)


# --- restore ---------------------------------------------------------------------------------

def restore(root: str, container_id: str, criu: str | None, flags: dict | None = None, *,
            systemd_cgroup: bool = False) -> int:
    """Restore and (with --detach) return 0, or wait for the restored init, delete the
    container and return its exit status (128+n for a signal), as `runp run`."""
    flags = flags or {}
    from .state import StateDir
    if StateDir(root, container_id).exists():
        from .errors import ContainerExists
        raise ContainerExists(container_id)
    opts = Options(flags, criu)
    path = _criu_path(criu, f"cannot restore container {container_id}")
    from .spec import load
    spec = load(os.path.abspath(flags.get("bundle") or "."))
    detach = opts.on("detach")
    proc = spec.process
    console = flags.get("console-socket")
    if proc is not None and proc.terminal and not console:
        raise RuntimeFailure("cannot restore a terminal container without --console-socket "
                             "(runp sends the restored pty's master there)")
    if not (proc is not None and proc.terminal) and console:
        raise RuntimeFailure("cannot use console socket if runp will not detach or allocate tty")
    if not os.path.isfile(os.path.join(opts.image_path, DESCRIPTORS)):
        raise RuntimeFailure(f"--image-path {opts.image_path}: no {DESCRIPTORS} (not a checkpoint "
                             "made by runp or runc)")
    from .container import Container
    c = Container(root, container_id)
    r = Restorer(c, spec, opts, path, systemd_cgroup)
    try:
        r.run()
    except BaseException:
        r.cleanup()
        raise
    if detach:
        return 0
    return _foreground(c, r.pid)


def _foreground(c, pid: int) -> int:
    """Wait as `run` does: signals forwarded, the exit status returned, the container deleted."""
    from . import run
    from .signals import Forwarder
    Forwarder().to(pid)
    try:
        return run._wait(pid)
    finally:
        run._delete(c)


class Restorer:
    """One restore: owns the state dir, cgroup, criu root mount and restored tree until the
    state is saved, so a failure removes all of it."""

    def __init__(self, c, spec, opts: Options, criu_path: str, systemd_cgroup: bool) -> None:
        self.c, self.spec, self.opts, self.criu_path = c, spec, opts, criu_path
        self.systemd_cgroup = systemd_cgroup
        self.cgroup = None
        self.pid = 0
        self.fds: list[int] = []
        self.criu_root = ""
        self.dir_made = False
        self.saved = False

    def run(self) -> None:
        from . import criu as criu_mod
        from .state import CONFIG_FILE, write_atomic
        spec, opts, d = self.spec, self.opts, self.c.dir
        r = criu_mod.rpc()
        d.make()
        self.dir_made = True
        d.lock()
        from . import jsonlite
        write_atomic(d.file(CONFIG_FILE), jsonlite.dumps(spec.raw, compact=True).encode(), 0o600)
        from .linux import cgroups
        self.cgroup = cgroups.open_manager(spec.linux.cgroups_path, self.c.id,
                                           systemd=self.systemd_cgroup, annotations=spec.annotations)
        self.cgroup.create()
        self.cgroup.apply(spec.linux.resources)
        image_fd = _open_dir(opts.image_path, "--image-path", make=False)
        self.fds.append(image_fd)
        work_fd = _open_dir(opts.work_path, "--work-path") if opts.work_path else -1
        if work_fd >= 0:
            self.fds.append(work_fd)
        o = _common_opts(r, spec, opts, image_fd, work_fd, "restore.log")
        o.evasive_devices = True
        o.rst_sibling = True
        o.root = self._criu_root()
        if opts.flags.get("lsm-profile"):
            o.lsm_profile = opts.flags["lsm-profile"]
        if opts.flags.get("lsm-mount-context"):
            o.lsm_mount_context = opts.flags["lsm-mount-context"]
        extra: list[int] = []
        for ns in spec.linux.namespaces:
            if not ns.path:
                continue
            if ns.type in ("network", "pid"):
                fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                self.fds.append(fd)
                key = "net" if ns.type == "network" else "pid"
                o.inherit_fd.add(key=_ns_key(key), fd=4 + len(extra))
                extra.append(fd)
            elif ns.type == "cgroup":
                raise RuntimeFailure("config.json: linux.namespaces: criu cannot join a cgroup "
                                     f"namespace ({ns.path})")
            else:
                from .linux.namespaces import PROC_NAMES
                o.join_ns.add(ns=PROC_NAMES[ns.type], ns_file=ns.path)
        self._make_mountpoints()
        ext = dict(_external_mounts(spec, spec.root_path) + _cgroup_binds(spec, self.cgroup.to_dict()))
        if spec.linux.masked_paths:  # the masked files' key in the image (see checkpoint)
            ext["/dev/null"] = "/dev/null"
        for dest, src in ext.items():
            o.ext_mnt.add(key=dest, val=src)
        from . import jsonlite as jl
        with open(os.path.join(opts.image_path, DESCRIPTORS), "rb") as f:
            descriptors = jl.loads(f.read())
        for i, target in enumerate(descriptors):
            if "pipe:" in target:
                o.inherit_fd.add(key=target, fd=i)

        def join(pid: int) -> None:
            # criu runs in the container's cgroup, and its paths there are the restored tree's
            # roots (cg_root): runc sets them for v1 only, and on cgroup v2 a restore into
            # another id then lands in the checkpointed container's cgroup (seen in the VM)
            self.cgroup.add_pid(pid)
            for ctrl, cdir in _proc_cgroups(pid).items():
                if ctrl:
                    o.cg_root.add(ctrl=ctrl, path=cdir)
                else:  # cgroup2: the root of every controller not named
                    o.cg_root.add(path=cdir)

        swrk = criu_mod.Swrk(self.criu_path, stdio=None if _has_tty(spec) else (0, 1, 2),
                             extra_fds=extra, cgroup_join=join)
        try:
            resp = swrk.call(r.criu_req(type=r.RESTORE, opts=o), self._notify)
        except criu_mod.CriuError:
            resp = None
        finally:
            swrk.close()
        if resp is None or not resp.success:
            raise _failed(f"cannot restore container {self.c.id}", self.opts.criu, "RESTORE", resp,
                          os.path.join(opts.work_path or opts.image_path, "restore.log"))
        if not self.saved:
            raise RuntimeFailure("criu restored nothing (no post-restore notification)")
        self._drop_criu_root()
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        d.unlock()

    def _notify(self, script: str, pid: int, fds: list[int]) -> None:
        if script == "setup-namespaces":
            hooks = self.spec.hooks
            if hooks.get("prestart") or hooks.get("createRuntime"):
                from . import hooks as hooks_mod
                from .state import hook_state
                state = hook_state(self.spec, self.c.id, "created", pid)
                hooks_mod.run(self.spec, "prestart", state)
                hooks_mod.run(self.spec, "createRuntime", state)
        elif script == "post-restore":
            self.pid = pid
            self._save(pid)
        elif script == "orphan-pts-master":
            if not fds:
                raise RuntimeFailure("criu sent no pty master")
            self._send_master(fds[0])

    def _send_master(self, master: int) -> None:
        from .console import channel
        from .linux import fdpass
        import _socket
        fd, _ = channel(self.opts.flags.get("console-socket"))
        sock = _socket.socket(fileno=fd)
        try:
            fdpass.send_fds(sock, b"orphan-pts-master", [master])
        finally:
            sock.close()

    def _save(self, pid: int) -> None:
        from .linux.namespaces import ns_paths
        from .state import State, now_rfc3339, proc_start_time, write_pid_file
        spec = self.spec
        lx = spec.linux
        start = proc_start_time(pid)
        if start is None:
            raise RuntimeFailure("the restored init exited at once")
        st = State(id=self.c.id, pid=pid, bundle=spec.bundle, rootfs=spec.root_path,
                   created=now_rfc3339(), start_time=start, annotations=spec.annotations,
                   owner="", oci_version=spec.oci_version,
                   cgroup=self.cgroup.to_dict() if self.cgroup.dirs() else {},
                   namespaces=ns_paths(pid, lx.namespaces),
                   extra={"pidns_joined": bool(lx.namespace("pid") and lx.namespace("pid").path),
                          "hooks": sorted(k for k, v in spec.hooks.items() if v),
                          "has_process": spec.process is not None,
                          "restored_from": self.opts.image_path})
        self.c.dir.save(st)
        self.c._state = st
        if self.opts.flags.get("pid-file"):
            write_pid_file(self.opts.flags["pid-file"], pid)
        self.saved = True

    def _criu_root(self) -> str:
        """criu wants the root a mount point whose parent is not overmounted: the rootfs bound
        (recursively) at <state dir>/criu-root, as runc does; unmounted once restored."""
        from .linux import sys as lsys
        root = self.c.dir.file("criu-root")
        os.mkdir(root, 0o755)
        self.criu_root = os.path.realpath(root)
        lsys.mount(self.spec.root_path, self.criu_root, None, lsys.MS_BIND | lsys.MS_REC)
        return self.criu_root

    def _drop_criu_root(self) -> None:
        if not self.criu_root:
            return
        from .linux import sys as lsys
        try:
            lsys.umount2(self.criu_root, lsys.MNT_DETACH)
        except OSError:
            pass
        try:
            os.rmdir(self.criu_root)
        except OSError:
            pass
        self.criu_root = ""

    def _make_mountpoints(self) -> None:
        """The mount points criu restores mounts on, where they are not on a tmpfs of the
        config (criu brings back a tmpfs with what was in it), resolved in the rootfs."""
        from .linux import paths
        from .linux.mounts import bind_source
        spec = self.spec
        tmpfs = [os.path.normpath(m.destination) for m in spec.mounts if m.type == "tmpfs"]
        rootfd = os.open(spec.root_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for m in spec.mounts:
                dest = os.path.normpath(m.destination)
                if m.type == "cgroup" or any(dest.startswith(t + "/") for t in tmpfs):
                    continue
                src = bind_source(m, spec.bundle)
                is_dir = src is None or os.path.isdir(src)
                try:
                    os.close(paths.make_mountpoint(rootfd, dest, is_dir))
                except OSError as e:
                    raise RuntimeFailure(f"config.json: mounts[{m.index}]: {dest}: "
                                         f"{e.strerror or e}") from None
        finally:
            os.close(rootfd)

    def cleanup(self) -> None:
        import _signal
        if self.pid:
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._drop_criu_root()
        if not self.dir_made:
            return
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
            except (OSError, RuntimeFailure):
                pass
        self.c.dir.remove()
        self.c.dir.unlock()


def _has_tty(spec) -> bool:
    return spec.process is not None and spec.process.terminal


def _proc_cgroups(pid: int) -> dict[str, str]:
    """v1 controllers ("" for cgroup2) -> cgroup path of `pid` (/proc/<pid>/cgroup)."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out
