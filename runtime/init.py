"""The container side of `create`: the forked processes that become the container.

runp create forks stage 1, which joins or creates the namespaces (asking the parent to write the
user namespace id maps), then forks stage 2, the container init, which is pid 1 of a new pid
namespace when there is one. Stage 1 reports the init's pid and exits. Without a user or time
namespace, or a pid namespace to join, there is no stage 1: the parent forks the init directly
into a new pid namespace, and the init enters the other namespaces itself. The init builds the
rootfs, pivots into it, reports "ready", drops privileges and loads seccomp (closing the init
pipe says it is done), then waits on the exec fifo until `runp start`, and execs the container
process.

Both stages talk to the parent over the init pipe (a SOCK_SEQPACKET socketpair): one message
per datagram, "<kind> <payload>". Any exception becomes an "error <one line>" message, which the
parent reports as is. Every process here stays non-dumpable until exec, so nothing in the
container can open /proc/<pid>/exe and reach the host interpreter (CVE-2019-5736).
"""
from __future__ import annotations

import os

import _signal

from .errors import RuntimeFailure
from .log import log
from .spec import Spec
from .linux import fdpass, namespaces
from .linux import sys as lsys


class InitPipe:
    """One end of the init pipe."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.last_fds: list[int] = []  # fds that came with the last message (SCM_RIGHTS)
        self.pending: list[str] = []  # requests sent with ask(), whose "ok" is still unread

    def send(self, kind: str, payload: str = "") -> None:
        self.sock.send(f"{kind} {payload}".encode() if payload else kind.encode())

    def recv(self) -> tuple[str, str]:
        for _ in range(3):
            try:
                data, fds = fdpass.recv_fds(self.sock, 65536, 4)
                break
            except ConnectionResetError:
                # The other side exited with a message of ours unread (it failed before it got
                # to "go"): the kernel reports that once, ahead of what it sent before exiting.
                continue
        else:
            data, fds = b"", []
        self.last_fds = fds
        if not data:
            return "eof", ""
        kind, _, payload = data.decode(errors="replace").partition(" ")
        return kind, payload

    def call(self, kind: str, payload: str = "") -> str:
        """Ask the parent to do something for us; wait for its "ok" and return its payload."""
        self.wait()
        self.send(kind, payload)
        return self._reply(kind)

    def ask(self, kind: str) -> None:
        """Ask without waiting: the parent works on it while we go on; wait() collects it."""
        self.send(kind)
        self.pending.append(kind)

    def wait(self) -> None:
        while self.pending:
            self._reply(self.pending.pop(0))

    def _reply(self, kind: str) -> str:
        reply, text = self.recv()
        if reply != "ok":
            raise RuntimeFailure(text or f"parent refused {kind}")
        return text


class InitOptions:
    """What the parent tells the child besides the spec: flags and the fds it inherits."""

    def __init__(self, *, no_pivot: bool = False, fifo_fd: int = -1, console_fd: int = -1,
                 preserve_fds: int = 0, no_new_keyring: bool = False,
                 cgroup_early: bool = False, cgroup_mounter=None, extra_env: list[str] | None = None,
                 callers_stdio: bool = False) -> None:
        self.no_pivot = no_pivot
        self.fifo_fd = fifo_fd
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.no_new_keyring = no_new_keyring
        self.cgroup_early = cgroup_early
        self.cgroup_mounter = cgroup_mounter
        self.extra_env = extra_env or []
        self.host_fds = None  # linux.mount_sources.HostFds: set by stage 1 in a user namespace
        self.callers_stdio = callers_stdio  # process.own_stdio
        self.seccomp = None  # linux.seccomp compiled on the host (linux/seccomp_cache.py)


def forks_directly(spec: Spec) -> bool:
    """Whether the parent can fork the init itself, with no stage 1 in between (as crun
    clones straight into the namespaces): saves a fork of a whole Python process. Not with a
    user namespace (it must own the others, so it comes first and needs the parent's id maps),
    a time namespace (offsets are written before any process is in it) or a pid namespace to
    join (setns applies to children only): those go through stage 1. Nor, for a new pid
    namespace, in a user namespace (rootless podman's): fork_init could not go back to ours,
    which its owner, the host's user namespace, holds (setns: EPERM)."""
    for ns in spec.linux.namespaces:
        if ns.type in ("user", "time") or ns.type == "pid" and ns.path:
            return False
    if namespaces.wants_new(spec.linux.namespaces, "pid"):
        from .rootless import in_user_namespace
        return not in_user_namespace()
    return True


def fork_init(spec: Spec) -> int:
    """fork() for forks_directly(): with a new pid namespace the child is its pid 1 (unshare
    CLONE_NEWPID applies to our next child only); we go back to our own pid namespace for the
    children we fork later (hooks)."""
    if not namespaces.wants_new(spec.linux.namespaces, "pid"):
        return os.fork()
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        lsys.unshare(lsys.CLONE_NEWPID)  # failed: nothing to go back from, its error stands
    except BaseException:
        os.close(own)
        raise
    try:
        pid = os.fork()
    except BaseException:
        try:
            lsys.setns(own, lsys.CLONE_NEWPID)
        except OSError:
            pass  # the fork's error is the one to report
        os.close(own)
        raise
    if pid != 0:
        try:
            lsys.setns(own, lsys.CLONE_NEWPID)
        finally:
            os.close(own)
    return pid


def child_main(spec: Spec, pipe: InitPipe, opts: InitOptions, direct: bool = False) -> None:
    """Stage 1 (or, direct, the init itself), right after fork in the parent's process.
    Never returns."""
    code = 1
    try:
        lsys.set_dumpable(False)
        _reset_signals()
        # Only stdio, the preserved fds and our own fds may stay open (CVE-2024-21626).
        keep = {pipe.sock.fileno(), opts.fifo_fd, opts.console_fd, log.fileno()}
        keep |= set(range(3, 3 + opts.preserve_fds))
        lsys.close_range_from(3, {k for k in keep if k >= 0})
        _preload(spec)
        log.phase("init imports")
        check_config(spec)
        if direct:  # entering namespaces changes nothing outside us: no need to wait for it
            in_userns = _enter_namespaces(spec, pipe, direct)
            _wait_for_go(spec, pipe, opts)
            init_main(spec, pipe, opts, in_userns)
        _wait_for_go(spec, pipe, opts)
        stage1(spec, pipe, opts)
        code = 0
    except BaseException as e:  # noqa: BLE001 - everything becomes one line for the parent
        _report(pipe, e)
    finally:
        os._exit(code)


def _report(pipe: InitPipe, e: BaseException) -> None:
    try:
        pipe.send("error", describe(e))
    except OSError:
        pass


def describe(e: BaseException) -> str:
    if isinstance(e, RuntimeFailure):
        return str(e)
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def check_config(spec: Spec) -> None:
    """What create can check before anything is made. Checked here, before "go", while the
    parent makes the state dir and the cgroup (which it removes again on our error): that
    keeps these checks off create's critical path. Nothing outside this process has changed
    yet; a namespace entered so far is ours alone."""
    if spec.linux.sysctl:  # only namespaced ones: the others would change the host
        from .linux.mounts import check_sysctls
        check_sysctls(spec)
    from .linux.mounts import check_idmapped  # (imported already: _preload)
    check_idmapped(spec)
    if spec.linux.memory_policy is not None:  # (its nodes, on the host's /sys)
        from .linux import mempolicy
        mempolicy.check(spec.linux.memory_policy)
    proc = spec.process
    if proc is None:  # allowed until start (config.md), which then fails
        return
    from .linux import capabilities
    # config.md: a capability that cannot be granted is logged as a warning, not fatal (runc);
    # prepare() drops the same names again, silently
    capabilities.parse(proc.capabilities, warn=log.warning)
    if spec.linux.seccomp is not None:
        from .linux import seccomp
        seccomp.validate(spec.linux.seccomp)
    if proc.scheduler is not None or proc.io_priority is not None or spec.linux.personality is not None:
        from .linux import sched
        sched.validate(proc.scheduler, proc.io_priority, spec.linux.personality)


def _wait_for_go(spec: Spec, pipe: InitPipe, opts: InitOptions) -> None:
    """Until the parent has made the state dir (the id is ours), nothing outside this process
    may change: it sends "go" with the exec fifo (and console) and the cgroup paths."""
    kind, payload = pipe.recv()
    fds = pipe.last_fds
    if kind != "go":
        os._exit(1)  # the parent gave up (it reports why)
    opts.fifo_fd = fds[0]
    opts.console_fd = fds[1] if len(fds) > 1 else -1
    from . import jsonlite
    go = jsonlite.loads(payload)
    if go["cgroup"] is not None:
        from .linux.cgroup_mount import CgroupPaths, make_mounter
        opts.cgroup_mounter = make_mounter(CgroupPaths(go["cgroup"], go["v1"]), spec)


def _reset_signals() -> None:
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGPIPE,
                _signal.SIGCHLD, _signal.SIGWINCH, _signal.SIGUSR1, _signal.SIGUSR2):
        _signal.signal(sig, _signal.SIG_DFL)


def stage1(spec: Spec, pipe: InitPipe, opts: InitOptions) -> None:
    """Enter the namespaces, fork the init (pid 1 of a new pid namespace), report its pid.
    In a user namespace with a mount namespace of its own, the rootfs and the bind sources
    are opened on the host's side first (see linux/mount_sources.py)."""
    lx = spec.linux
    opener = None
    # (not for a non-root caller: the helper could not join the mount namespace, and it would
    # see no more than the container's root, the same host uid)
    if lx.namespace("user") is not None and namespaces.wants_new(lx.namespaces, "mount") \
            and os.geteuid() == 0:
        from .linux.mount_sources import SourceOpener
        opener = SourceOpener(spec)  # forked now, while we still have the host's credentials
    try:
        in_userns = _enter_namespaces(spec, pipe, direct=False)
        if opener is not None:
            opts.host_fds = opener.open()
            log.phase("mount sources")
    finally:
        if opener is not None:
            opener.close()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            init_main(spec, pipe, opts, in_userns)
        except BaseException as e:  # noqa: BLE001
            _report(pipe, e)
        finally:
            os._exit(code)
    if opts.host_fds is not None:
        opts.host_fds.close()  # the init has its own copies
    pipe.send("pid", str(pid))


def _enter_namespaces(spec: Spec, pipe: InitPipe, direct: bool) -> bool:
    """Join or create the namespaces but the cgroup one (made once in the container's cgroup)
    and, direct, the pid one (the parent made it for us). True in a user namespace."""
    lx = spec.linux
    namespaces.join_existing(lx.namespaces)
    in_userns = namespaces.wants_new(lx.namespaces, "user")
    if in_userns:
        _unshare_user(pipe)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    elif lx.namespace("user"):
        in_userns = True  # joined one
    flags = namespaces.unshare_flags(lx.namespaces, exclude=("user", "cgroup", "pid") if direct
                                     else ("user", "cgroup"))
    if flags:
        lsys.unshare(flags)
    if lx.time_offsets:
        namespaces.write_time_offsets(lx.time_offsets)
    log.phase("namespaces")
    return in_userns


def _unshare_user(pipe: InitPipe) -> None:
    """A new user namespace, its id maps written by the parent. A parent that is not the host's
    root can open our /proc/<pid>/uid_map (or have newuidmap do it) only while we are dumpable:
    /proc/<pid> of a non-dumpable process belongs to the host's root. So, as runc's nsexec, we
    are dumpable for that moment: still runp, in an empty user namespace, and whoever could
    ptrace us then could ptrace the (unprivileged) parent as well."""
    from .rootless import unprivileged
    dumpable = unprivileged()  # (asked before the unshare: the answer is about the caller)
    lsys.unshare(lsys.CLONE_NEWUSER)
    if dumpable:
        lsys.set_dumpable(True)
    try:
        pipe.call("idmap")
    finally:
        if dumpable:
            lsys.set_dumpable(False)


def _install_notify_filter(prepared, pipe: InitPipe) -> None:
    """A profile with SCMP_ACT_NOTIFY is installed before "ready", so the parent (still alive
    and on the host, where listenerPath is) can hand the listener fd to the seccomp agent."""
    from .linux import seccomp
    if prepared.process.no_new_privileges:
        lsys.set_no_new_privs()
    fd = seccomp.install(prepared.seccomp)
    prepared.seccomp = None
    if fd is None:
        return
    try:
        fdpass.send_fds(pipe.sock, b"seccompfd", [fd])
    finally:
        os.close(fd)
    reply, text = pipe.recv()
    if reply != "ok":
        raise RuntimeFailure(text)


def forward_notify_fd(pipe, spec: Spec, fds: list[int], state: bytes, pid: int) -> None:
    """Parent side of _install_notify_filter (create and exec): hand the seccomp listener fd
    received over the init pipe to the agent at listenerPath; a failure is also sent back to
    the child. Our copies are closed."""
    from .linux import seccomp
    sc = spec.linux.seccomp or {}
    try:
        if not fds:
            raise RuntimeFailure("seccomp: no listener fd received")
        seccomp.send_notify_fd(sc["listenerPath"], fds[0], state, sc.get("listenerMetadata", ""),
                               pid=pid)
    except RuntimeFailure as e:
        pipe.send("error", str(e))
        raise
    finally:
        for fd in fds:
            os.close(fd)


def _cgroup_barrier(pipe: InitPipe, lx, early: bool):
    """A callable run once before the first cgroup mount (mount=True), or after all mounts:
    from then on the container's cgroup exists and, if asked for, we are in a new cgroup
    namespace whose root is that cgroup. Joining early, it waits for the join. Joining late
    (under a memory limit), it only waits for the cgroup to be made; for the namespace it joins,
    unshares and leaves again, so that the rootfs work stays charged outside until the join."""
    done = []
    cgroupns = namespaces.wants_new(lx.namespaces, "cgroup")

    def barrier(mount: bool = False) -> None:
        if done or not (early or cgroupns or mount):
            return
        done.append(True)
        if early:
            pipe.wait()
        else:
            pipe.call("cgroup" if cgroupns else "cgroupmade")
        if cgroupns:
            lsys.unshare(lsys.CLONE_NEWCGROUP)
            if not early:
                pipe.call("cgroupleave")
    return barrier


def _make_cwd(rootfd: int, cwd: str) -> None:
    """runc creates a missing process.cwd; after pivot_root, so it lands inside the rootfs,
    and before the root is made read-only. Resolved in the root without magic links, so
    "/proc/self/fd/N/x" cannot reach (and create) a host directory (CVE-2024-21626)."""
    from .linux import paths
    try:
        os.close(paths.mkdir_all(rootfd, cwd))
    except OSError as e:
        raise RuntimeFailure(f"config.json: process.cwd: {cwd}: {e.strerror}") from None


def _preload(spec: Spec) -> None:
    """Import now everything needed later: after pivot_root the host's site-packages (and the
    interpreter's stdlib) are out of reach; and now, right after fork, the parent is busy
    with the state dir and the cgroup on the other core."""
    from .linux import mounts, paths, cgroup_mount  # noqa: F401
    from . import process
    process.preload(spec, spec.process is not None and spec.process.terminal)
    if spec.hooks.get("startContainer") or spec.hooks.get("createContainer"):
        from . import hooks  # noqa: F401
    if _wants_sched(spec):
        from .linux import sched  # noqa: F401
        lsys.libc  # noqa: B018  (sched calls go through a ctypes.CDLL of libc: load it now)
    if spec.linux.memory_policy is not None:
        from .linux import mempolicy  # noqa: F401


def _wants_sched(spec: Spec) -> bool:
    p = spec.process
    return spec.linux.personality is not None or p is not None and (
        p.scheduler is not None or p.io_priority is not None)


def _wait_for_start_without_process(pipe: InitPipe, opts: InitOptions) -> None:
    """A container created without process: report ready, wait for `runp start` (which
    fails: there is nothing to run) and exit, so the container is stopped."""
    if not opts.cgroup_early:
        pipe.call("cgroup")
    pipe.send("ready")
    pipe.sock.close()
    os.read(opts.fifo_fd, 1)
    os._exit(1)


def init_main(spec: Spec, pipe: InitPipe, opts: InitOptions, in_userns: bool) -> None:
    """Stage 2: the container init. Returns only by exec or exception."""
    from .linux.mounts import RootfsBuilder, write_sysctls

    lx = spec.linux
    proc = spec.process
    lsys.prctl(lsys.PR_SET_NAME, b"runp:[2:INIT]")  # "runp:[2:INIT]" in ps, as runc's init
    os.setsid()
    from .linux import procfs
    procfs.root()  # now, before any of the container's mounts exist (linux/procfs.py)
    log.debug(f"procfs root: {procfs.how}")
    if not opts.no_new_keyring:
        namespaces.new_session_keyring(spec.bundle)
    if opts.cgroup_early:
        # The parent moves us into the container's cgroup while we build the rootfs (the move
        # waits for an RCU grace period: milliseconds); we wait for it only where it matters.
        pipe.ask("cgroup")
    in_cgroup = _cgroup_barrier(pipe, lx, opts.cgroup_early)
    if opts.cgroup_mounter is not None:
        mounter = opts.cgroup_mounter
        opts.cgroup_mounter = lambda *a: (in_cgroup(True), mounter(*a))
    if namespaces.wants_new(lx.namespaces, "network"):
        namespaces.loopback_up()
    if lx.net_devices:  # the parent moves them into our network namespace (netdevices.py)
        pipe.call("netdevices")
    # Without a mount namespace the container shares the runtime's: the rootfs is still built,
    # on a bind of root.path in that namespace (detached again by `delete`), and entered by chroot.
    mount_ns = lx.namespace("mount") is not None
    # In a user namespace, the container's or the one runp runs in (rootless podman's), devices
    # are bound from the host (mknod: EPERM) and remounts keep the locked flags.
    from .rootless import in_user_namespace
    rootfs = RootfsBuilder(spec, in_userns or in_user_namespace(), opts.cgroup_mounter,
                           host_ns=not mount_ns, host_fds=opts.host_fds)
    rootfs.prepare()
    rootfs.mount_all()
    rootfs.release_sources()
    log.phase("mounts")
    in_cgroup()
    log.phase("cgroup wait")
    rootfs.create_devices()
    if not opts.cgroup_early and any(spec.hooks.get(k) for k in
                                     ("prestart", "createRuntime", "createContainer")):
        pipe.call("cgroup")  # hooks find the container's cgroup through its pid: join first
        opts.cgroup_early = True  # (so no second join below)
    hook_state = b""
    if any(spec.hooks.get(k) for k in ("prestart", "createRuntime", "createContainer",
                                        "startContainer")):
        hook_state = pipe.call("hooks").encode()  # prestart + createRuntime run in the parent now
    if spec.hooks.get("createContainer"):
        from . import hooks
        from .process import process_env
        os.fchdir(rootfs.rootfd)  # runc runs them from the rootfs (pivot changes dir anyway)
        hooks.run_in_container(spec, "createContainer", hook_state, process_env(proc, opts.extra_env))
    rootfs.pivot(opts.no_pivot)
    if spec.hostname is not None and lx.namespace("uts"):
        lsys.sethostname(spec.hostname)
    if spec.domainname is not None and lx.namespace("uts"):
        lsys.setdomainname(spec.domainname)
    if lx.sysctl:
        write_sysctls(lx.sysctl)
    console_slave = None
    if proc is not None and proc.terminal:
        from . import console
        console_slave = console.setup_in_container(rootfs, opts.console_fd,
                                                   proc.console_size)
        opts.console_fd = -1
        # The terminal replaces the caller's stdio now, not at exec (as runc does): containerd's
        # shim reads create's output through a pipe until EOF, and would wait forever.
        for fd in (0, 1, 2):
            os.dup2(console_slave, fd)
        os.close(console_slave)
        console_slave = 0
    if proc is not None:
        _make_cwd(rootfs.rootfd, proc.cwd)
    rootfs.finish()
    if proc is None:  # config.md: process is OPTIONAL at create, REQUIRED by start
        _wait_for_start_without_process(pipe, opts)
    from . import process as cproc
    try:
        prepared = cproc.prepare(spec, opts.extra_env, seccomp=opts.seccomp)
    except RuntimeFailure as e:  # the program not found: runc's words, and the field they are
        # about (the phrase is kept whole: podman maps "executable file not found" to 127)
        if not str(e).startswith("unable to start container process: exec:"):
            raise
        raise RuntimeFailure(f"config.json: process.args[0]: {e}") from None
    if proc.oom_score_adj is not None:
        cproc.set_oom_score_adj(proc.oom_score_adj)
    if _wants_sched(spec):  # scheduler, ioPriority, personality: they survive execve
        from .linux import sched
        sched.apply(proc.scheduler, proc.io_priority, lx.personality)
    if lx.memory_policy is not None:  # inherited and kept across execve, too
        from .linux import mempolicy
        mempolicy.apply(lx.memory_policy)
    cproc.set_rlimits(proc)  # now, so a limit that cannot be set fails create (as runc)
    prepared.rlimits_applied = True
    cproc.own_stdio(proc.user.uid, opts.callers_stdio)  # at create, as runc
    prepared.stdio_owned = True
    if prepared.seccomp is not None and prepared.seccomp_listener:
        _install_notify_filter(prepared, pipe)
    # not joined early (a memory limit): the parent moves us once we have dropped privileges,
    # below, so that what this process allocated so far stays charged outside (Creator.run)
    log.phase("ready")
    pipe.send("ready")
    # The whole privilege drop (cwd, bounding set, uid/gids, capabilities, no_new_privs,
    # seccomp) before we wait for `runp start`, as runc 1.1.5's init does it
    # (standard_init_linux.go: finalizeNamespace and seccomp, then the fifo): start then only
    # wakes us for the execve. From start's wake-up of this process to its execve (tracefs,
    # hack/start-latency, medians of 30, alternating): 0.46 -> 0.15 ms, runc 0.21 ms; create
    # took no longer. The parent records the state meanwhile and reads our verdict before it
    # saves it: an error here still fails create (as with runc).
    program = cproc.drop_privileges(prepared, console_slave, opts.preserve_fds,
                                    keep={opts.fifo_fd, pipe.sock.fileno()})
    pipe.sock.close()  # the verdict: done (Creator._finish)
    # wait for `runp start`: it writes one byte into the fifo we hold open read-write (the fd
    # is open already: as the process's user, under its filter, a read is all it takes)
    os.read(opts.fifo_fd, 1)
    if not spec.hooks.get("startContainer"):
        os.close(opts.fifo_fd)
        try:
            cproc.exec_dropped(prepared, program)
        except BaseException as e:  # noqa: BLE001 - nobody is listening on the pipe any more
            os.write(2, f"runp: {describe(e)}\n".encode())
            os._exit(1)
    # `runp start` waits for our verdict on the fifo (hooks.wait_start_verdict). The hooks run
    # as runc 1.1.5's init runs them (standard_init_linux.go): right before the execve, after
    # finalizeNamespace (bounding set, uid/gids, cwd, capabilities), no_new_privs and seccomp,
    # so with the process's credentials, cwd and filter, never as root with every capability.
    from . import hooks
    verdict = opts.fifo_fd
    try:
        cproc.exec_dropped(prepared, program,
                           report=lambda msg: hooks.report_start_failure(verdict, msg),
                           before_exec=lambda: hooks.run_in_container(
                               spec, "startContainer", hook_state, prepared.env))
    except BaseException as e:  # noqa: BLE001
        hooks.report_start_failure(verdict, describe(e))
        os._exit(1)
