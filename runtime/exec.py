"""`runp exec`: run another process inside a running (or created) container.

runp forks a helper that makes itself non-dumpable, closes every fd it does not pass on, and
joins the container's namespaces. Joining a pid or time namespace only applies to children, so
the helper forks the process itself, reports its (host) pid and exits; runp is a child
subreaper, so the process becomes runp's child. The parent then writes that pid into the
container's cgroup (or the sub-cgroup of --cgroup), and the process prepares exactly as the
container init does (runtime.process): rlimits, seccomp, capabilities around the uid switch,
no_new_privs, then execve. The init pipe (CLOEXEC) reaching EOF without an "error" message
means the exec happened.

Without --detach runp waits for the process, forwards signals to it and returns its exit status
(128+signal when killed); with a terminal and no --console-socket it proxies the pty.
"""
from __future__ import annotations

import os

import _signal  # the signal and socket modules cost milliseconds (enum, selectors)

from .container import Container
from .errors import ConfigError, RuntimeFailure, os_error_text
from .linux import fdpass
from .linux import sys as lsys
from .log import log
from .records import record, field
from .spec import Process, Spec, _parse_process
from .state import proc_start_time, write_pid_file


@record
class ExecOptions:
    """`runp exec`'s flags (runc's names). Without `process_file` the process is the
    container's own config.json process changed by the other flags, as with runc."""

    args: list[str] = field(default_factory=list)
    process_file: str | None = None
    tty: bool = False
    cwd: str | None = None
    env: list[str] = field(default_factory=list)
    user: str | None = None
    additional_gids: list[str] = field(default_factory=list)
    caps: list[str] = field(default_factory=list)
    no_new_privs: bool | None = None
    process_label: str | None = None
    apparmor: str | None = None
    detach: bool = False
    pid_file: str | None = None
    console_socket: str | None = None
    pidfd_socket: str | None = None
    preserve_fds: int = 0
    ignore_paused: bool = False
    cgroup: list[str] = field(default_factory=list)


def exec_in(root: str, container_id: str, o: ExecOptions) -> int:
    """Run the process; the exit status in the foreground, 0 once it runs with --detach."""
    c = Container(root, container_id)
    status = c.status()
    if status == "stopped":
        raise RuntimeFailure("cannot exec in a stopped container")
    if status == "paused" and not o.ignore_paused:
        raise RuntimeFailure("cannot exec in a paused container (use --ignore-paused to override)")
    if status == "creating":
        raise RuntimeFailure("cannot exec in a container that is still being created")
    spec = c.spec()
    proc = build_process(spec, o)
    if proc.terminal and o.detach and not o.console_socket:
        raise RuntimeFailure("cannot allocate tty if runp will detach without setting console socket")
    if o.console_socket and not proc.terminal:
        raise RuntimeFailure("cannot use console socket if runp will not detach or allocate tty")
    subs = parse_cgroup_flags(o.cgroup)
    from .linux import capabilities
    try:  # what cannot be granted is a warning (config.md), as in create
        capabilities.parse(proc.capabilities, "process.capabilities", warn=log.warning,
                           file=o.process_file or "config.json")
    except ConfigError as e:
        raise ConfigError(e.path, e.problem, file=o.process_file or "config.json") from None
    _check_process_attrs(spec, proc, o.process_file or "config.json")
    from .process import note_ignored_labels
    note_ignored_labels(proc)
    _preload(spec, proc)
    seccomp = None
    if spec.linux.seccomp is not None:
        from .linux.seccomp_cache import compiled  # on the host, before the fork
        seccomp = compiled(spec.linux.seccomp, root)
    log.phase("parse")
    ex = _Exec(c, spec, proc, o, subs, seccomp)
    if not o.detach:
        ex.hold_signals()
    try:
        ex.start()
    except BaseException:
        ex.abort()
        raise
    if o.detach:
        return 0
    return ex.wait()


# --- the process: from --process, or the container's process changed by runc's flags ------------

def build_process(spec: Spec, o: ExecOptions) -> Process:
    from . import jsonlite
    if o.process_file:
        try:
            with open(o.process_file, "rb") as f:
                raw = jsonlite.loads(f.read())
        except OSError as e:
            raise RuntimeFailure(f"--process {o.process_file}: {os_error_text(e)}") from None
        except ValueError as e:
            raise RuntimeFailure(f"--process {o.process_file}: invalid JSON: {e}") from None
        return _parse(raw, o.process_file)
    if not o.args:
        raise RuntimeFailure("process args cannot be empty")
    raw = jsonlite.loads(jsonlite.dumps(spec.raw.get("process") or {"cwd": "/"}))  # a deep copy
    raw["args"] = list(o.args)
    raw["terminal"] = o.tty
    if o.cwd is not None:
        raw["cwd"] = o.cwd
    for e in o.env:
        if "=" not in e:
            raise RuntimeFailure(f'invalid environment variable: "{e}"')
    raw["env"] = list(raw.get("env") or []) + list(o.env)
    user = raw.setdefault("user", {})
    if o.user is not None:
        uid, _, gid = o.user.partition(":")
        user["uid"] = _number(uid, "uid", "--user")
        if gid:
            user["gid"] = _number(gid, "gid", "--user")
    if o.additional_gids:
        gids = list(user.get("additionalGids") or [])
        gids += [_number(g, "gid", "--additional-gids") for g in o.additional_gids]
        user["additionalGids"] = gids
    if o.caps:
        _add_caps(raw, o.caps)
    if o.no_new_privs is not None:
        raw["noNewPrivileges"] = o.no_new_privs
    if o.process_label is not None:
        raw["selinuxLabel"] = o.process_label
    if o.apparmor is not None:
        raw["apparmorProfile"] = o.apparmor
    return _parse(raw, "config.json")


def _parse(raw, file: str) -> Process:
    try:
        return _parse_process(raw, "process")
    except ConfigError as e:
        raise ConfigError(e.path, e.problem, file=file) from None


def _number(s: str, what: str, flag: str) -> int:
    if not s.isdigit() or int(s) >= 1 << 32:
        raise RuntimeFailure(f"{flag}: parsing {s!r} as a numeric {what} failed")
    return int(s)


def _add_caps(raw: dict, caps: list[str]) -> None:
    """--cap adds to the bounding, effective, permitted and ambient sets (runc 1.1). Names
    this kernel cannot grant are dropped with a warning, as runc does."""
    from .linux import capabilities
    avail = capabilities.host_bounding()
    good, bad = [], []
    for c in caps:
        num = capabilities.CAPS.get(c)
        (good if num is not None and avail >> num & 1 else bad).append(c)
    if bad:
        log.warning(f"ignoring unknown or unavailable capabilities: [{' '.join(bad)}]")
    sets = raw.get("capabilities")
    sets = dict(sets) if isinstance(sets, dict) else {}
    for name in ("bounding", "effective", "permitted", "ambient"):
        have = list(sets.get(name) or [])
        sets[name] = have + [c for c in good if c not in have]
    raw["capabilities"] = sets


def parse_cgroup_flags(args: list[str]) -> dict[str, str]:
    """--cgroup [ctrl[,ctrl]:]path -> {controller or "": sub-path}, with runc's rules: a bare
    path applies to every controller and cannot be combined with others."""
    out: dict[str, str] = {}
    for a in args:
        parts = a.split(":")
        if len(parts) > 2:
            raise RuntimeFailure(f"invalid --cgroup argument: {a}")
        if len(parts) == 1:
            if len(args) != 1:
                raise RuntimeFailure(f"invalid --cgroup argument: {a} (missing <controller>: prefix)")
            out[""] = _sub_path(a)
            continue
        for ctrl in parts[0].split(","):
            if not ctrl:
                raise RuntimeFailure(f"invalid --cgroup argument: {a} (empty <controller> prefix)")
            if ctrl in out:
                raise RuntimeFailure(f"invalid --cgroup argument(s): controller {ctrl} specified "
                                     "multiple times")
            out[ctrl] = _sub_path(parts[1])
    return out


def _sub_path(p: str) -> str:
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if ".." in parts:
        raise RuntimeFailure(f"invalid --cgroup argument: {p} (must stay inside the container's cgroup)")
    return "/".join(parts)


def cgroup_targets(mgr, subs: dict[str, str]) -> list[str]:
    """The directories whose cgroup.procs get the process: the container's own, or the
    --cgroup sub-cgroups inside them."""
    out: list[str] = []
    for ctrl, d in mgr.paths.items():
        names = ctrl.split(",")
        sub = next((subs[n] for n in names if n in subs), subs.get("", ""))
        t = os.path.join(d, sub) if sub else d
        if t not in out:
            out.append(t)
    if mgr.unified:
        sub = subs.get("", subs.get("unified", ""))
        t = os.path.join(mgr.unified, sub) if sub else mgr.unified
        if t not in out:
            out.append(t)
    return out


def _wants_sched(spec: Spec, proc: Process) -> bool:
    return spec.linux.personality is not None or proc.scheduler is not None or \
        proc.io_priority is not None


def _check_process_attrs(spec: Spec, proc: Process, file: str) -> None:
    """What the process sets on itself before its exec, as the container init does (scheduler,
    ioPriority, personality, memoryPolicy): checked before anything is forked. An error in
    the process names the file that gave it (--process, or config.json)."""
    try:
        if _wants_sched(spec, proc):
            from .linux import sched
            sched.validate(proc.scheduler, proc.io_priority, spec.linux.personality)
    except ConfigError as e:
        if e.path.startswith("process."):
            raise ConfigError(e.path, e.problem, file=file) from None
        raise
    if spec.linux.memory_policy is not None:
        from .linux import mempolicy
        mempolicy.check(spec.linux.memory_policy)


def _preload(spec: Spec, proc: Process) -> None:
    """Everything the process needs after it entered the container's mount namespace, where
    the host's Python is out of reach, is imported now."""
    from . import process
    from .init import describe  # noqa: F401
    process.preload(spec, proc.terminal)
    if _wants_sched(spec, proc):
        from .linux import sched  # noqa: F401
        lsys.libc  # noqa: B018  (sched calls go through a ctypes.CDLL of libc: load it now)
    if spec.linux.memory_policy is not None:
        from .linux import mempolicy  # noqa: F401


def _set_affinity(cpus: list[int], which: str, file: str) -> None:
    """sched_setaffinity of the calling process (process.execCPUAffinity)."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as e:
        raise ConfigError(f"process.execCPUAffinity.{which}",
                          f"sched_setaffinity: {e.strerror}", file=file) from None


# --- the work ------------------------------------------------------------------------------------

class _Exec:
    """One exec: owns the helper, the process and the fds until the process runs."""

    def __init__(self, c: Container, spec: Spec, proc: Process, o: ExecOptions,
                 subs: dict[str, str], seccomp: object = None) -> None:
        self.c = c
        self.spec = spec
        self.proc = proc
        self.seccomp = seccomp  # linux.seccomp, compiled (linux/seccomp_cache.py)
        self.o = o
        self.subs = subs
        self.helper = 0   # the fork that joins the namespaces
        self.pid = 0      # the process (host pid)
        self.fds: list[int] = []
        self.socks: list = []  # our sockets (init pipe, console socketpair)
        self.console_parent = None
        self.master: int | None = None
        self.listen_fds = 0

    def start(self) -> None:
        from .init import InitPipe
        npass = self._occupy_passed_range()
        console_fd = self._console()
        parent, child = fdpass.socketpair()
        self.socks += [parent, child]
        lsys.set_child_subreaper()  # the process is reparented to us when the helper exits
        pid = os.fork()
        if pid == 0:
            parent.close()
            if self.console_parent is not None:
                self.console_parent.close()
            _helper_main(self.c, self.spec, self.proc, InitPipe(child), console_fd, npass,
                         self.listen_fds, callers_stdio=not (self.o.detach or self.proc.terminal),
                         file=self.o.process_file or "config.json", seccomp=self.seccomp)
        self.helper = pid
        log.phase("fork")
        child.close()
        self.socks.remove(child)
        if console_fd >= 0:
            os.close(console_fd)
            self.fds.remove(console_fd)
        self._handshake(InitPipe(parent))
        if self.console_parent is not None:
            from .console import recv_master
            self.master, _ = recv_master(self.console_parent)
        if self.o.pidfd_socket:
            from . import pidfd_socket
            pidfd_socket.send(self.o.pidfd_socket, self.pid, pidfd_socket.EXEC)
        if self.o.pid_file:
            write_pid_file(self.o.pid_file, self.pid)
        self._close_fds()

    def _occupy_passed_range(self) -> int:
        """Fds 3..3+N-1 go to the process: socket activation's LISTEN_FDS first, then
        --preserve-fds (see process.occupy_passed_fds)."""
        from .process import occupy_passed_fds, socket_activation_fds
        self.listen_fds = socket_activation_fds()
        total = self.listen_fds + self.o.preserve_fds
        occupy_passed_fds(total)
        return total

    def _console(self) -> int:
        """The fd the process sends the pty master over: the --console-socket connection, or
        one end of a socketpair whose other end we read (foreground terminal)."""
        if not self.proc.terminal:
            return -1
        from .console import channel
        fd, self.console_parent = channel(self.o.console_socket)
        if self.console_parent is not None:
            self.socks.append(self.console_parent)
        self.fds.append(fd)
        return fd

    def _handshake(self, pipe) -> None:
        # The process may ask before the helper has told us its pid (they share the pipe):
        # its requests wait until then.
        waiting: list[tuple[str, list[int]]] = []
        while True:
            kind, payload = pipe.recv()
            if kind == "pid":
                self.pid = int(payload)
                log.phase(f"namespaces (process {self.pid})")
                lsys.reap(self.helper)
                self.helper = 0
                for k, fds in waiting:
                    self._answer(pipe, k, fds)
                waiting = []
            elif kind in ("cgroup", "seccompfd"):
                if self.pid:
                    self._answer(pipe, kind, pipe.last_fds)
                else:
                    waiting.append((kind, pipe.last_fds))
            elif kind == "error":
                raise RuntimeFailure(payload)
            elif kind == "eof":
                log.phase("exec")
                break
        if self.helper:
            lsys.reap(self.helper)
            self.helper = 0
        if not self.pid:
            raise RuntimeFailure("exec failed: the setup process exited early")

    def _answer(self, pipe, kind: str, fds: list[int]) -> None:
        if kind == "cgroup":
            self._join_cgroup(pipe)
        else:
            self._send_seccomp_fd(pipe, fds)

    def _join_cgroup(self, pipe) -> None:
        st = self.c.state
        if not st.cgroup:
            pipe.send("ok")
            return
        from .linux import cgroups
        mgr = cgroups.Manager.from_dict(st.cgroup)
        for d in cgroup_targets(mgr, self.subs):
            try:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(self.pid))
            except OSError as e:
                msg = f"cannot add process {self.pid} to cgroup {d}: {e.strerror}"
                pipe.send("error", msg)
                raise RuntimeFailure(msg) from None
        if st.extra.get("intel_rdt"):  # the container's resctrl group, as runc does
            from .linux import intelrdt
            try:
                intelrdt.add_task(st.extra["intel_rdt"], self.pid)
            except RuntimeFailure as e:
                pipe.send("error", str(e))
                raise
        log.phase("cgroup join")
        pipe.send("ok")

    def _send_seccomp_fd(self, pipe, fds: list[int]) -> None:
        """The process installed a filter with a notify listener: pass the fd to the agent."""
        from .init import forward_notify_fd
        from .state import hook_state
        state = hook_state(self.spec, self.c.id, self.c.status(), self.c.state.pid)
        forward_notify_fd(pipe, self.spec, fds, state, self.pid)
        pipe.send("ok")

    def _close_fds(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []
        self.console_parent = None
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def abort(self) -> None:
        """Undo a failed start: nothing of this exec may survive it."""
        self._close_fds()
        if self.master is not None:
            os.close(self.master)
            self.master = None
        for pid in (self.helper, self.pid):
            if pid:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
                lsys.reap(pid)
        self.helper = self.pid = 0

    # --- foreground ----------------------------------------------------------------------------
    def hold_signals(self) -> None:
        """Forward signals from before the fork (runtime/signals.py)."""
        from .signals import Forwarder
        self.forwarder = Forwarder()

    def wait(self) -> int:
        """Forward signals, proxy the terminal if we hold it, return the exit status."""
        import gc
        gc.freeze()  # runp's CLI runs without the collector; we may now wait for days:
        gc.enable()  # on, for what is made from now (see runtime/cli.py)
        pid = self.pid
        done: list[int] = []
        fw = self.forwarder
        fw.to(pid)

        def reaped(status: int) -> None:
            fw.stopped = True  # the pid may be another process's from now on
            done.append(status)

        def exited() -> bool:
            if not done:
                try:
                    p, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    p, status = pid, 255 << 8
                if p == pid:
                    reaped(status)
            return bool(done)

        try:
            if self.master is not None:
                from .console import Proxy
                proxy = Proxy(self.master)
                _signal.signal(_signal.SIGWINCH, lambda *_: proxy.resize())
                with proxy:
                    proxy.pump(exited)
            while not done:
                try:
                    p, status = os.waitpid(pid, 0)
                except ChildProcessError:
                    p, status = pid, 255 << 8
                if p == pid:
                    reaped(status)
        finally:
            if self.master is not None:
                os.close(self.master)
                self.master = None
        status = done[0]
        log.phase("exited")
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        return os.WEXITSTATUS(status)


# --- the forked side -----------------------------------------------------------------------------

def _helper_main(c: Container, spec: Spec, proc: Process, pipe, console_fd: int, npass: int,
                 listen_fds: int, callers_stdio: bool = False, file: str = "config.json",
                 seccomp: object = None) -> None:
    """Right after fork: become non-dumpable, drop runp's fds, join the namespaces, fork the
    process. Never returns."""
    from .init import _report, _reset_signals
    from .linux import sys as lsys
    code = 1
    try:
        lsys.set_dumpable(False)
        _reset_signals()
        keep = {pipe.sock.fileno(), console_fd} | set(range(3, 3 + npass))
        lsys.close_range_from(3, {k for k in keep if k >= 0})
        aff = proc.exec_cpu_affinity
        if aff is not None and aff.initial is not None:  # before the cgroup join (config.md)
            _set_affinity(aff.initial, "initial", file)
        # our procfs root, from the host's side: the process uses it inside the container,
        # where the container's /proc may have anything mounted on it (linux/procfs.py)
        from .linux import procfs
        procfs.root()
        join_namespaces(c.state.pid, c.state.start_time, c.state.namespaces)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _process_main(spec, proc, pipe, console_fd, npass, listen_fds, callers_stdio,
                              file, seccomp)
            except BaseException as e:  # noqa: BLE001
                _report(pipe, e)
            finally:
                os._exit(code)
        pipe.send("pid", str(pid))
        code = 0
    except BaseException as e:  # noqa: BLE001 - everything becomes one line for the parent
        _report(pipe, e)
    finally:
        os._exit(code)


# setns order: every namespace but the user one first (as root we may join them all from
# here, including ones owned by the host user namespace, e.g. a network namespace the
# container joined by path), then the user namespace, then anything that needed it.
_ORDER = ("ipc", "uts", "network", "pid", "time", "cgroup", "mount")


def join_namespaces(pid: int, start_time: int, nss: dict[str, str]) -> None:
    """Enter the container init's namespaces and its root directory."""
    from .linux import namespaces
    from .linux import sys as lsys
    fds: dict[str, int] = {}
    root = -1
    try:
        for t, path in nss.items():
            try:
                fds[t] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise RuntimeFailure(f"cannot exec in a stopped container ({path}: {e.strerror})") from None
        # the init's root, not the mount namespace's: they differ with --no-pivot (the rootfs
        # was moved over "/") and without a mount namespace (chroot)
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if proc_start_time(pid) != start_time:  # the init died and its pid was reused
            raise RuntimeFailure("cannot exec in a stopped container")
        deferred = []
        for t in _ORDER:
            if t in fds:
                try:
                    lsys.setns(fds[t], namespaces.FLAGS[t])
                except PermissionError:
                    deferred.append(t)
        if "user" in fds:
            lsys.setns(fds["user"], lsys.CLONE_NEWUSER)
            _become_root()
        for t in deferred:
            lsys.setns(fds[t], namespaces.FLAGS[t])
        os.fchdir(root)
        os.chroot(".")
        os.chdir("/")
    except OSError as e:
        raise RuntimeFailure(f"cannot join the container's namespaces: {e.strerror}") from None
    finally:
        for fd in fds.values():
            os.close(fd)
        if root >= 0:
            os.close(root)


def _become_root() -> None:
    """In a joined user namespace: uid/gid 0 there (when mapped), no supplementary groups.
    Changing ids resets the dumpable flag, so set it again."""
    from .linux import sys as lsys
    try:
        os.setgroups([])
    except OSError:
        pass  # /proc/<pid>/setgroups is "deny"
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError:
        pass  # 0 is not mapped: we keep the overflow ids, with full capabilities
    lsys.set_dumpable(False)


def _process_main(spec: Spec, proc: Process, pipe, console_fd: int, npass: int,
                  listen_fds: int, callers_stdio: bool = False, file: str = "config.json",
                  seccomp: object = None) -> None:
    """The process, inside the container's namespaces: prepare as the init does, get into the
    cgroup, exec. Returns only by exception. `file` is the file errors name (--process)."""
    from . import process as cproc
    from .init import _install_notify_filter
    os.setsid()
    extra_env = [f"LISTEN_FDS={listen_fds}", f"LISTEN_PID={os.getpid()}"] if listen_fds else []
    try:
        os.stat(proc.cwd)
    except OSError as e:
        raise RuntimeFailure(f'chdir to cwd ("{proc.cwd}") set in config.json failed: '
                             f"{(e.strerror or '').lower()}") from None
    prepared = cproc.prepare(spec, extra_env, process=proc, seccomp=seccomp)
    prepared.callers_stdio = callers_stdio  # for process.own_stdio
    if proc.oom_score_adj is not None:
        cproc.set_oom_score_adj(proc.oom_score_adj, file)
    if prepared.seccomp is not None and prepared.seccomp_listener:
        _install_notify_filter(prepared, pipe)
    slave = None
    if proc.terminal:
        from . import console
        slave = console.setup_in_container(None, console_fd, proc.console_size)
        console_fd = -1
    pipe.call("cgroup")
    aff = proc.exec_cpu_affinity
    if aff is not None and aff.final is not None:  # after the cgroup join (config.md)
        _set_affinity(aff.final, "final", file)
    # what the init sets on itself before exec, in the same order (runtime/init.py)
    if _wants_sched(spec, proc):
        from .linux import sched
        try:
            sched.apply(proc.scheduler, proc.io_priority, spec.linux.personality)
        except ConfigError as e:
            raise ConfigError(e.path, e.problem,
                              file=file if e.path.startswith("process.") else e.file) from None
    if spec.linux.memory_policy is not None:
        from .linux import mempolicy
        mempolicy.apply(spec.linux.memory_policy)
    fd = pipe.sock.fileno()

    def report(msg: str) -> None:
        try:
            pipe.send("error", msg)
        except OSError:
            pass
    cproc.exec_process(prepared, slave, npass, keep={fd}, report=report, by_fd=True)
