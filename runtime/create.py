"""`create` on the parent side: fork the container's first process (which checks the config),
make the state dir and the cgroup, answer the init over the init pipe, and record the state.

A Creator owns everything made so far, so a failure at any point undoes all of it. The
container side of the same handshake is runtime.init.
"""
from __future__ import annotations

import os
import time

import _signal

from . import spec as spec_mod
from .errors import RuntimeFailure
from .linux import sys as lsys
from .log import log
from .state import (CONFIG_FILE, CREATING_FILE, FIFO_FILE, State, StateDir, now_rfc3339,
                    proc_start_time, write_atomic, write_pid_file)


class CreateOptions:
    def __init__(self, *, pid_file: str | None = None, console_socket: str | None = None,
                 no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
                 systemd_cgroup: bool = False, rootless: bool | None = None,
                 pidfd_socket: str | None = None) -> None:
        self.pid_file = pid_file
        self.pidfd_socket = pidfd_socket  # --pidfd-socket (runtime/pidfd_socket.py)
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.systemd_cgroup = systemd_cgroup
        self.rootless = rootless  # --rootless: True, False or None (auto; runtime/rootless.py)


def validate_options(spec: spec_mod.Spec, opts: CreateOptions, foreground: bool) -> None:
    """The flags against the config; the config itself is checked by the init, in parallel
    (runtime.init.check_config)."""
    if os.geteuid() != 0:
        from .rootless import check_config
        check_config(spec)
    proc = spec.process
    if proc is None:
        return
    if proc.terminal and not opts.console_socket and not foreground:
        raise RuntimeFailure("cannot allocate tty if runp will detach without setting console socket")
    if not proc.terminal and opts.console_socket:
        raise RuntimeFailure("cannot use console socket if runp will not detach or allocate tty")


class Creator:
    """One `create`: owns everything made so far, so a failure can undo all of it. Once run()
    returns, `state` is what it recorded and `console_master` the foreground pty master (if any):
    the Container takes both."""

    def __init__(self, d: StateDir, container_id: str, spec: spec_mod.Spec, opts: CreateOptions,
                 foreground: bool) -> None:
        self.dir = d
        self.id = container_id
        self.state: State | None = None
        self.console_master: int | None = None
        self.spec = spec
        self.opts = opts
        self.foreground = foreground
        self.cgroup = None
        self.stage1 = 0
        self.init_pid = 0
        self.fds: list[int] = []
        self.socks: list = []  # our ends of the init pipe and console socketpair
        self.host_ns_root: int | None = None  # no mount ns: the top mount on root.path before
        self.dir_made = False  # the state dir is ours to remove (not another container's)
        self.netns_fd = -1  # the container's network namespace, while devices may go back
        self.netdevs: list = []  # linux.netdevices.Moved: devices moved in (linux.netDevices)
        self.rdt: dict | None = None  # the resctrl group (linux.intelRdt), see intelrdt.apply
        self.joined = False  # the init is in its cgroup (_join_cgroup)
        self.verdict_read = False  # the init's privilege drop is over (_init_verdict)
        self.creating: dict = {}  # what CREATING_FILE says was made (_record_creating)
        from .rootless import rootless_cgroups
        self.rootless_cgroups = rootless_cgroups(opts.rootless)  # do without a cgroup not ours

    def run(self) -> None:
        """Fork the container's first process at once: it imports what it needs, checks the
        config and enters its namespaces while we make the state dir and the cgroup; it
        waits for our "go" (with the exec fifo) before it touches anything outside itself."""
        validate_options(self.spec, self.opts, self.foreground)
        pipe = self._fork()
        log.phase("fork")
        from .process import note_ignored_labels  # (imported by _fork already)
        note_ignored_labels(self.spec.process, self.spec.linux.mount_label)
        fifo_fd = self._make_state_dir()
        self._open_cgroup()
        if self.rootless_cgroups:  # the init's cgroup mounts must know what could be made
            self._make_cgroup()
        if self.spec.linux.namespace("mount") is None:
            from .linux.mounts import top_mount_id
            self.host_ns_root = top_mount_id(self.spec.root_path) or 0
        console_fd, console_parent = self._console()
        self._go(pipe, fifo_fd, console_fd)
        if console_fd >= 0:
            os.close(console_fd)
            self.fds.remove(console_fd)
        log.phase("prepare")
        # The cgroup is made while the init builds its rootfs (2 cores: in parallel); the init
        # asks to join it ("cgroup") only after this, since the parent answers in _handshake.
        if not self.rootless_cgroups:
            self._make_cgroup()
        log.phase("cgroups")
        self._handshake(pipe)
        log.phase("handshake")
        if not self.joined and self.cgroup is not None:
            # The late join (a memory limit, _cgroup_early): once the init has dropped its
            # privileges, which it does right after "ready" while our parent process still
            # shares its pages, so every page it writes is a copy charged where it is: here,
            # to runp's cgroup. Joined before that, the smallest limit `run` of /bin/true
            # got through went from 128 to 192 KiB in 3 of 9 bench samples (now 9 of 9 at 128).
            self._init_verdict(pipe)
            self._join_cgroup()
            log.phase("cgroup join")
        if self.spec.linux.intel_rdt is not None:  # before start: the process runs in it
            from .linux import intelrdt
            self._record_creating("intel_rdt", intelrdt.planned(self.spec.linux.intel_rdt, self.id))
            self.rdt = intelrdt.apply(self.spec.linux.intel_rdt, self.id, self.init_pid)
            self._record_creating("intel_rdt", self.rdt)  # (exact: what apply found made)
        self._delegate_cgroup()
        if console_parent is not None:
            from .console import recv_master
            self.console_master, _ = recv_master(console_parent)
        self._finish(pipe)

    def _fork(self):
        """Fork the init (direct) or stage 1; our end of the init pipe."""
        from .init import InitOptions, InitPipe, child_main, fork_init, forks_directly
        from .linux import fdpass
        spec, opts = self.spec, self.opts
        self._occupy_preserved_range()
        parent, child = fdpass.socketpair()
        self.socks += [parent, child]
        env = self._listen_env()
        iopts = InitOptions(no_pivot=opts.no_pivot, preserve_fds=opts.preserve_fds + self._listen_fds,
                            no_new_keyring=opts.no_new_keyring, cgroup_early=self._cgroup_early(),
                            extra_env=env, callers_stdio=self.foreground and not (
                                spec.process is not None and spec.process.terminal))
        if spec.linux.seccomp is not None and spec.process is not None:
            from .linux.seccomp_cache import compiled  # on the host, before the fork
            iopts.seccomp = compiled(spec.linux.seccomp, self.dir.root)
        # Through stage 1 the init is re-parented to us when stage 1 exits: `run` waits for
        # it, and a failed create can reap it (an unreaped zombie keeps its cgroup busy).
        lsys.set_child_subreaper()
        direct = forks_directly(spec)
        pid = fork_init(spec) if direct else os.fork()
        if pid == 0:
            parent.close()
            child_main(spec, InitPipe(child), iopts, direct)
        if direct:
            self.init_pid = pid
        else:
            self.stage1 = pid
        child.close()
        self.socks.remove(child)
        return InitPipe(parent)

    def _make_state_dir(self) -> int:
        """<root>/<id>/ (failing if the id is taken), locked, with config.json and the exec
        fifo; returns our read-write end of the fifo (the init's, once sent)."""
        d = self.dir
        d.make()
        self.dir_made = True
        d.lock()
        write_atomic(d.file(CONFIG_FILE), _dump(self.spec.raw), 0o600)
        fifo = d.file(FIFO_FILE)
        os.mkfifo(fifo, 0o622)
        fifo_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        self.fds.append(fifo_fd)
        return fifo_fd

    def _go(self, pipe, fifo_fd: int, console_fd: int) -> None:
        """Release the init: the config checked out and the state dir exists. With it go the
        exec fifo, the console and where the container's cgroup is (for its cgroup mounts)."""
        from . import jsonlite
        from .linux import fdpass
        go = {"cgroup": None}
        if self.cgroup is not None:  # for cgroup_mount.CgroupPaths: [[mountpoint, [controllers]]]
            v1 = [[mnt, sorted(ctrls)] for mnt, _root, ctrls in self.cgroup.hierarchies]
            go = {"cgroup": self.cgroup.to_dict(), "v1": v1}
        fds = [fifo_fd] + ([console_fd] if console_fd >= 0 else [])
        try:
            fdpass.send_fds(pipe.sock, b"go " + jsonlite.dumps(go, compact=True).encode(), fds)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died: its "error" is queued for the handshake

    _listen_fds = 0

    def _occupy_preserved_range(self) -> None:
        from .process import occupy_passed_fds, socket_activation_fds
        self.fds += occupy_passed_fds(self.opts.preserve_fds + socket_activation_fds())

    def _listen_env(self) -> list[str]:
        """systemd socket activation passes through, as runc does: LISTEN_FDS for pid 1."""
        from .process import socket_activation_fds
        self._listen_fds = socket_activation_fds()
        return [f"LISTEN_FDS={self._listen_fds}", "LISTEN_PID=1"] if self._listen_fds else []

    def _console(self) -> tuple[int, object]:
        proc = self.spec.process
        if proc is None or not proc.terminal:
            return -1, None
        from .console import channel
        fd, ours = channel(self.opts.console_socket)
        self.fds.append(fd)
        if ours is not None:
            self.socks.append(ours)
        return fd, ours

    def _open_cgroup(self) -> None:
        """Where the container's cgroup goes (nothing is made yet; the init's cgroup mounts
        need the paths)."""
        from .linux import cgroups
        lx = self.spec.linux
        self.cgroup = cgroups.open_manager(lx.cgroups_path, self.id, systemd=self.opts.systemd_cgroup,
                                           annotations=self.spec.annotations)

    def _make_cgroup(self) -> None:
        self._record_cgroup_plan()
        if self.rootless_cgroups:
            from .linux.cgroups import rootless
            rootless.create(self.cgroup, self.spec.linux.resources)
        else:
            self.cgroup.create()
            self.cgroup.apply(self.spec.linux.resources)

    def _record_cgroup_plan(self) -> None:
        """Before the first mkdir: which cgroup directories this create is about to make, in the
        state dir (CREATING_FILE), so that a `delete` after this process was killed midway (OOM
        killer, a shim's timeout) finds them, and the processes in them, without state.json.
        Only directories missing now are listed: one that existed before stays (kill sweep)."""
        from .linux.cgroup_recorded import planned
        if self.cgroup.scope is not None:  # systemd: nothing is made before the scope starts
            return
        self._record_creating("cgroup", {**self.cgroup.to_dict(),
                                         "created": planned(self.cgroup.dirs())})

    def _record_creating(self, key: str, rec) -> None:
        """Write down, in the state dir (CREATING_FILE), what this create made or is about to
        make outside it: the cgroup, the devices moved into the container's network namespace
        (with the init whose namespace holds them), the resctrl group. A `delete` after this
        process was killed before state.json (container.Container._destroy_half_made) undoes
        them from this record alone."""
        self.creating[key] = rec
        write_atomic(self.dir.file(CREATING_FILE), _dump(self.creating), 0o600)

    def _delegate_cgroup(self) -> None:
        """The cgroup to the container's user where the spec says so (cgroup_owner); once the
        init has joined it (a systemd scope exists only from then on), before `start`."""
        owner = cgroup_owner(self.spec)
        if owner is None:
            return
        try:
            self.cgroup.delegate(owner)
        except RuntimeFailure as e:
            if not self.rootless_cgroups:  # (giving it to another uid needs CAP_CHOWN)
                raise
            log.debug(f"{e} (rootless: the cgroup stays the caller's)")

    def _join_cgroup(self) -> None:
        if self.rootless_cgroups:
            from .linux.cgroups import rootless
            rootless.join(self.cgroup, self.init_pid, self.spec.linux.resources)
        else:
            self.cgroup.add_pid(self.init_pid)
        self.joined = True

    def _cgroup_early(self) -> bool:
        """Join the cgroup early (in parallel with the rootfs work) unless there is a memory
        limit: then late, right before "ready", so that what the init allocated for its own
        setup stays charged outside and a container limited to 1 MiB still runs (a cgroup
        namespace is then made during a brief visit: "cgroupleave")."""
        lx = self.spec.linux
        mem = (lx.resources or {}).get("memory") or {}
        return not isinstance(mem, dict) or mem.get("limit") is None

    def _handshake(self, pipe) -> None:
        from .linux import namespaces
        lx = self.spec.linux
        cgroup_wanted = netdevs_wanted = False
        while True:
            kind, payload = pipe.recv()
            if kind == "idmap":
                namespaces.write_id_maps(self.stage1, lx.uid_mappings, lx.gid_mappings)
                _ok(pipe)
            elif kind == "pid":
                self.init_pid = int(payload)
                lsys.reap(self.stage1)
                self.stage1 = 0
                if cgroup_wanted:
                    self._join_cgroup()
                    _ok(pipe)
                    log.phase("cgroup join")  # (once the init has the answer it waits for)
                if netdevs_wanted:
                    self._move_netdevs()
                    _ok(pipe)
            elif kind == "netdevices":  # the init is in its network namespace
                if self.init_pid:
                    self._move_netdevs()
                    _ok(pipe)
                else:
                    netdevs_wanted = True
            elif kind == "cgroup":
                if self.init_pid:
                    self._join_cgroup()
                    _ok(pipe)
                    log.phase("cgroup join")
                else:  # the init asked before stage 1 told us its pid: answer on "pid"
                    cgroup_wanted = True
            elif kind == "cgroupmade":  # answered here, so after _make_cgroup
                if not self.init_pid and self.opts.systemd_cgroup:
                    cgroup_wanted = True  # a systemd scope is made with the init: on "pid"
                    continue
                self.cgroup.ensure_made(self.init_pid)
                _ok(pipe)
            elif kind == "cgroupleave":  # late join: back out once the cgroup ns is made
                self.cgroup.move_to_runtime_cgroups(self.init_pid)
                self.joined = False  # (joined for good after the privilege drop: run())
                _ok(pipe)
            elif kind == "hooks":
                _ok(pipe, self._prestart_hooks().decode())
            elif kind == "seccompfd":
                self._send_seccomp_fd(pipe)
                _ok(pipe)
            elif kind == "ready":
                return
            elif kind == "error":
                raise RuntimeFailure(payload)
            elif kind == "eof":
                raise RuntimeFailure("container init exited during setup")

    def _move_netdevs(self) -> None:
        """linux.netDevices into the init's network namespace, which we keep open until create
        succeeds: a failed create moves them back (an init that died would take a virtual
        device with its namespace)."""
        from .linux import netdevices
        self.netns_fd = os.open(f"/proc/{self.init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            netdevices.move_in(self.spec.linux.net_devices, self.netns_fd, self.netdevs)
        finally:  # (a kill during the moves kills the init too: its namespace takes them)
            self._record_creating("netdevices", {
                "pid": self.init_pid, "start_time": proc_start_time(self.init_pid),
                "moved": [[m.host_name, m.index, m.was_up] for m in self.netdevs]})
        log.phase("net devices")

    def _send_seccomp_fd(self, pipe) -> None:
        """The init sent its seccomp listener fd: pass it on to the agent at listenerPath."""
        from .init import forward_notify_fd
        from .state import hook_state
        state = hook_state(self.spec, self.id, "creating", self.init_pid)
        forward_notify_fd(pipe, self.spec, list(getattr(pipe, "last_fds", [])), state, self.init_pid)

    def _prestart_hooks(self) -> bytes:
        from .state import hook_state
        state = hook_state(self.spec, self.id, "created", self.init_pid)
        if self.spec.hooks.get("prestart") or self.spec.hooks.get("createRuntime"):
            from . import hooks
            # from the bundle directory, where runc runs them (it changes into it at create)
            hooks.run(self.spec, "prestart", state, cwd=self.spec.bundle)
            hooks.run(self.spec, "createRuntime", state, cwd=self.spec.bundle)
        return state

    def _finish(self, pipe) -> None:
        from .linux.namespaces import ns_paths
        spec, d = self.spec, self.dir
        start = proc_start_time(self.init_pid)
        if start is None:
            self._init_verdict(pipe)  # why, if it said so
            raise RuntimeFailure("container init exited during setup")
        lx = spec.linux
        st = State(id=self.id, pid=self.init_pid, bundle=spec.bundle, rootfs=spec.root_path,
                   created=now_rfc3339(), start_time=start, annotations=spec.annotations,
                   owner="", oci_version=spec.oci_version,
                   cgroup=self.cgroup.to_dict() if self.cgroup and self.cgroup.dirs() else {},
                   namespaces=ns_paths(self.init_pid, lx.namespaces),
                   extra={"pidns_joined": bool(lx.namespace("pid") and lx.namespace("pid").path),
                          "hooks": sorted(k for k, v in spec.hooks.items() if v),
                          "has_process": spec.process is not None})
        if self.rdt is not None:
            st.extra["intel_rdt"] = self.rdt
        if self.host_ns_root is not None:  # the bind the init made; delete detaches it
            from .linux.mounts import top_mount_id
            st.extra["host_rootfs_mount"] = top_mount_id(spec.root_path)
        self._init_verdict(pipe)
        d.save(st)
        log.phase("state saved")
        if self.opts.pidfd_socket:
            from . import pidfd_socket
            pidfd_socket.send(self.opts.pidfd_socket, self.init_pid, pidfd_socket.INIT)
        if self.opts.pid_file:
            write_pid_file(self.opts.pid_file, self.init_pid)
        self.state = st
        if self.netns_fd >= 0:  # the devices are the container's now (config-linux.md)
            os.close(self.netns_fd)
            self.netns_fd = -1
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        for s in self.socks:
            s.close()
        self.socks = []
        d.unlock()

    def _init_verdict(self, pipe) -> None:
        """After "ready" the init drops its privileges (init.init_main) while we record the
        state; it closes the init pipe once done, or says why it could not: then create fails,
        as runc's does."""
        if self.verdict_read:
            return
        self.verdict_read = True
        kind, payload = pipe.recv()
        if kind == "error":
            raise RuntimeFailure(payload)

    def cleanup(self) -> None:
        for s in self.socks:
            s.close()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if self.console_master is not None:
            os.close(self.console_master)
            self.console_master = None
        if self.netns_fd >= 0:
            self._move_netdevs_back()
        if self.rdt is not None:
            from .linux import intelrdt
            try:
                intelrdt.remove(self.rdt)
            except OSError as e:
                log.warning(f"remove resctrl group: {e}")
        for pid in (self.stage1, self.init_pid):
            if pid:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.stage1:
            lsys.reap(self.stage1)
        if self.init_pid:
            _wait_gone(self.init_pid)
        if not self.dir_made:  # failed before anything was made (or the id is taken)
            return
        if self.spec.hooks.get("poststop"):  # lifecycle: a failed create goes on at delete
            from . import hooks
            from .state import hook_state
            hooks.run(self.spec, "poststop", hook_state(self.spec, self.id, "stopped", self.init_pid),
                      warn_only=True, log=log, cwd=self.spec.bundle)
        if self.host_ns_root is not None:
            from .linux.mounts import detach_rootfs, top_mount_id
            top = top_mount_id(self.spec.root_path)
            if top is not None and top != self.host_ns_root:
                detach_rootfs(self.spec.root_path, top)
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
            except (OSError, RuntimeFailure) as e:  # the original error matters more
                log.warning(f"remove cgroup: {e}")
        self.dir.remove()
        self.dir.unlock()

    def _move_netdevs_back(self) -> None:
        from .linux import netdevices
        try:
            for problem in netdevices.move_back(self.netns_fd, self.netdevs):
                log.warning(problem)
        finally:
            os.close(self.netns_fd)
            self.netns_fd = -1


def cgroup_owner(spec: spec_mod.Spec) -> int | None:
    """The host uid to own the container's cgroup (runtime-spec "Cgroup ownership", as runc
    1.2): the one running process.user.uid, when the container gets a new cgroup namespace and
    a read-write cgroup mount at /sys/fs/cgroup, so that its root can manage its own subtree
    (systemd in a container); None otherwise, or when that uid is not mapped."""
    from .linux.namespaces import wants_new
    lx = spec.linux
    if not wants_new(lx.namespaces, "cgroup") or not any(
            m.source == "cgroup" and os.path.normpath(m.destination) == "/sys/fs/cgroup"
            and "ro" not in m.options for m in spec.mounts):
        return None
    uid = spec.process.user.uid if spec.process is not None else 0
    if lx.namespace("user") is None:
        return uid
    return next((m.host_id + uid - m.container_id for m in lx.uid_mappings
                 if m.container_id <= uid < m.container_id + m.size), None)


def _ok(pipe, payload: str = "") -> None:
    """Answer the init. If it died meanwhile (a request sent with ask() is answered after
    its failure), its "error" message is still queued: the handshake reads it next."""
    try:
        pipe.send("ok", payload)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    """Wait for a killed init: reap it if it is our child (runp run is a subreaper; an unreaped
    zombie would keep its cgroup busy), else wait until it is gone or a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
            time.sleep(0.002)
            continue
        except ChildProcessError:
            pass
        if proc_start_time(pid) is None:
            return
        time.sleep(0.002)


def _dump(raw: dict) -> bytes:
    from . import jsonlite
    return jsonlite.dumps(raw, compact=True).encode()
