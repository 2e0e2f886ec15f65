"""The container process: resolve what to exec, then drop privileges in the right order and exec.

Shared by the container init and `runp exec`. The order matters for security:
fds closed and cwd checked (CVE-2024-21626) -> rlimits -> seccomp (only here if
noNewPrivileges is false: loading it needs CAP_SYS_ADMIN) -> capabilities around the uid switch
-> no_new_privs -> seccomp (as late as possible) -> execve. The container init does all but the
execve before it waits for `start` (drop_privileges, then exec_dropped), as runc's does.
"""
from __future__ import annotations

import os
from .records import field, record

from .errors import RuntimeFailure
from .spec import Process, Spec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@record
class Prepared:
    """Everything exec needs, computed before the container is reported ready."""

    path: str
    args: list[str]
    env: list[str]
    process: Process
    caps: object  # capabilities.CapSets
    seccomp: object = None  # seccomp.Program, compiled before start
    seccomp_listener: tuple[str, str] | None = None  # (listenerPath, listenerMetadata)
    rlimits_applied: bool = False  # the container init sets them before "ready"
    stdio_owned: bool = False  # the container init re-owns its stdio before "ready" too
    callers_stdio: bool = False  # fds 0-2 are runp's caller's own (foreground, no terminal)
    extra: dict = field(default_factory=dict)


def prepare(spec: Spec, extra_env: list[str] | None = None, process: Process | None = None,
            seccomp: object = None) -> Prepared:
    """`seccomp`: linux.seccomp compiled by the runtime before it forked, on the host
    (linux/seccomp_cache.compiled): the process only installs it."""
    from .linux import capabilities

    proc = process or spec.process
    assert proc is not None
    env = process_env(proc, extra_env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={_home_of(proc.user.uid)}")
    path = lookup(proc.args[0], env, proc.cwd)
    # names that cannot be granted were logged already (init.check_config, exec): dropped here
    caps = capabilities.parse(proc.capabilities, warn=_drop)
    sc = spec.linux.seccomp
    listener = None
    if seccomp is not None and sc.get("listenerPath"):
        listener = (sc["listenerPath"], sc.get("listenerMetadata", ""))
    return Prepared(path, proc.args, env, proc, caps, seccomp, listener)


def process_env(proc: Process | None, extra_env: list[str] | None = None) -> list[str]:
    """process.env and the runtime's extras, before HOME is added: later entries win, as with
    runc (extra LISTEN_FDS/LISTEN_PID override the config)."""
    env = (proc.env if proc is not None else []) + (extra_env or [])
    seen: dict[str, int] = {}
    out: list[str] = []
    for e in env:
        name = e.split("=", 1)[0]
        if name in seen:
            out[seen[name]] = e
        else:
            seen[name] = len(out)
            out.append(e)
    return out


def _home_of(uid: int) -> str:
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def lookup(name: str, env: list[str], cwd: str) -> str:
    """Find the executable as execvp would, with the container's PATH; runc's error text."""
    if "/" in name:
        full = name if name.startswith("/") else os.path.join(cwd, name)
        if not os.path.exists(full):
            raise RuntimeFailure(f'unable to start container process: exec: "{name}": '
                                 "stat " + name + ": no such file or directory")
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise RuntimeFailure(f'unable to start container process: exec: "{name}": permission denied')
        return full
    path = DEFAULT_PATH
    for e in env:
        if e.startswith("PATH="):
            path = e[5:]
    for d in path.split(":"):
        full = os.path.join(d or cwd, name)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return full
    raise RuntimeFailure(f'unable to start container process: exec: "{name}": '
                         "executable file not found in $PATH")


def preload(spec: Spec, terminal: bool) -> None:
    """Import now what exec_process() needs: it runs inside the container's mount namespace,
    where the host's Python (stdlib, site-packages, .so files) is out of reach."""
    from .linux import capabilities, paths, procfs  # noqa: F401  (paths: open_program)
    lsm_enabled()  # asked on the host: after pivot_root /sys is the container's, or missing
    if terminal:
        import termios  # noqa: F401
        from . import console  # noqa: F401
    if spec.linux.seccomp is not None:  # install() (compiled by the runtime on the host)
        import struct  # noqa: F401
        from .linux import seccomp as _sc  # noqa: F401


def socket_activation_fds() -> int:
    """systemd socket activation: LISTEN_FDS fds from 3 on, if they were meant for us."""
    n = os.environ.get("LISTEN_FDS", "")
    return int(n) if n.isdigit() and os.environ.get("LISTEN_PID") == str(os.getpid()) else 0


def occupy_passed_fds(count: int) -> list[int]:
    """Fds 3..3+count-1 go to the container process: fill any the caller did not open with
    /dev/null, so that the fds runp opens for itself land above them and can never be passed
    on by mistake. Returns the placeholders, for the caller to close when done."""
    filled = []
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            filled.append(fd)
    return filled


def set_oom_score_adj(value: int, file: str = "config.json") -> None:
    """A value below the current one needs CAP_SYS_RESOURCE on the host (rootless: never).
    Written below our own procfs (linux/procfs.py), never through the container's /proc. The
    error names the field, the file written and the value in force (containerd's CRI asks for
    -998 for its sandboxes, which a host without CAP_SYS_RESOURCE refuses)."""
    from .linux import procfs
    try:
        procfs.write("self/oom_score_adj", str(value))
    except OSError as e:
        try:
            now = procfs.read("self/oom_score_adj").decode().strip()
        except OSError:
            now = "?"
        raise RuntimeFailure(f"{file}: process.oomScoreAdj: write /proc/self/oom_score_adj: "
                             f"cannot set {value} "
                             f"(now {now}): {e.strerror or e}") from None


def set_rlimits(proc: Process) -> None:
    """A hard limit above the current one needs CAP_SYS_RESOURCE on the host (rootless: never)."""
    from .linux import sys as lsys
    from .linux.arch import RLIMITS
    for i, r in enumerate(proc.rlimits):
        soft = lsys.RLIM_INFINITY if r.soft >= 1 << 63 else r.soft
        hard = lsys.RLIM_INFINITY if r.hard >= 1 << 63 else r.hard
        try:
            lsys.setrlimit(RLIMITS[r.type], soft, hard)
        except OSError as e:
            now = lsys.getrlimit_hard(RLIMITS[r.type])
            raise RuntimeFailure(
                f"config.json: process.rlimits[{i}]: cannot set {r.type} to {r.soft}:{r.hard} "
                f"(hard limit now {'unlimited' if now == lsys.RLIM_INFINITY else now}): "
                f"{e.strerror}") from None


def own_stdio(uid: int, callers: bool = False) -> None:
    """Give fds 0-2 to the process's uid before the switch, as runc's fixStdioPermissions
    does, so that a non-root process can use its terminal (tty, mesg, script) and reopen
    /dev/stdout: each one not /dev/null and not the uid's already is chowned, its group
    kept (the tty group, from devpts' gid=5). EINVAL (the group is not mapped in our user
    namespace), EPERM (the owner is not) and EROFS are not errors, the fd stays as it is.

    `callers`: fds 0-2 are runp's caller's own (runp in the foreground without a terminal).
    runc hands its container pipes of its own there, owned by the process: runp passes on
    a pipe of the caller's instead, which is re-owned likewise; the caller's terminal or file
    is left alone (runc never gives those to the container in the foreground)."""
    import errno
    import stat
    try:
        null = os.stat("/dev/null").st_rdev
    except OSError:
        null = None
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:  # closed by the caller: nothing to re-own
            continue
        if st.st_uid == uid or (null is not None and st.st_rdev == null):
            continue
        if callers and not (stat.S_ISFIFO(st.st_mode) and _is_anonymous_pipe(st)):
            continue
        try:
            os.fchown(fd, uid, st.st_gid)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS):
                raise RuntimeFailure(f"fchown stdio fd {fd} to uid {uid}: {e.strerror}") from None


def _is_anonymous_pipe(st: os.stat_result) -> bool:
    """A pipe (pipefs, the one file system of all pipe(2) pipes), not a named fifo."""
    r, w = os.pipe()
    try:
        return os.fstat(r).st_dev == st.st_dev
    finally:
        os.close(r)
        os.close(w)


def switch_user(proc: Process) -> None:
    u = proc.user
    groups = list(u.additional_gids)
    try:
        os.setgroups(groups)
    except PermissionError:
        # setgroups is denied in a user namespace whose /proc/<pid>/setgroups is "deny"
        if groups:
            raise
    for name, value, setter in (("gid", u.gid, os.setresgid), ("uid", u.uid, os.setresuid)):
        try:
            setter(value, value, value)
        except OSError as e:
            import errno
            if e.errno != errno.EINVAL:  # EINVAL: the id is not mapped in our user namespace
                raise
            raise RuntimeFailure(f"process.user.{name}: unable to setup user: cannot set {name} "
                                 f"{value} to unmapped user in user namespace") from None


def exec_process(p: Prepared, console_slave: int | None, preserve_fds: int,
                 keep: set[int] | frozenset[int] = frozenset(), report=None,
                 by_fd: bool = False, before_exec=None) -> None:
    """Drop privileges and exec (`runp exec`). Never returns. See drop_privileges and
    exec_dropped for the arguments."""
    program = drop_privileges(p, console_slave, preserve_fds, keep)
    exec_dropped(p, program, report, by_fd, before_exec)


def drop_privileges(p: Prepared, console_slave: int | None, preserve_fds: int,
                    keep: set[int] | frozenset[int] = frozenset()) -> Program | OSError:
    """Everything before the execve: the terminal, the fds, the cwd, the program checked (the
    file itself, or the OSError execve would raise), umask, LSM label, then the credentials
    and seccomp. `keep`: close-on-exec fds that stay open until the exec (runp exec's pipe;
    the init's exec fifo and init pipe)."""
    from .linux import capabilities
    from .linux import sys as lsys

    proc = p.process
    if console_slave is not None:
        for fd in (0, 1, 2):
            os.dup2(console_slave, fd)
        if console_slave > 2:
            os.close(console_slave)
        import fcntl
        import termios
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # we are a session leader (setsid): our tty now
    from .linux import procfs
    passed = set(range(3, 3 + preserve_fds))
    if procfs.held() & passed:  # (procfs keeps it at 1000 and above)
        raise RuntimeFailure(f"--preserve-fds {preserve_fds}: would pass runp's own procfs fd")
    lsys.close_range_from(3, passed | set(keep) | procfs.held())
    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    os.chdir(proc.cwd)
    try:
        os.getcwd()  # ENOENT if the cwd is not reachable from our root
    except OSError:
        raise RuntimeFailure(f"process.cwd {proc.cwd} is outside the container root") from None
    program: Program | OSError
    try:
        program = open_program(p.path, p.args)  # (as root: the check must see every file)
    except OSError as e:
        program = e  # what execve would have said: reported where it would have failed
    if not p.rlimits_applied:
        set_rlimits(proc)
    if not p.stdio_owned:
        own_stdio(proc.user.uid, p.callers_stdio)
    os.umask(proc.user.umask if proc.user.umask is not None else 0o022)
    _apply_lsm(proc)
    notify_fd = None
    if p.seccomp is not None and not proc.no_new_privileges:
        notify_fd = _load_seccomp(p)
    # an ambient capability that cannot be raised (not inheritable) is dropped, as runc does
    capabilities.apply(p.caps, lambda: switch_user(proc), warn=_debug)
    if proc.no_new_privileges:
        lsys.set_no_new_privs()
        if p.seccomp is not None:
            notify_fd = _load_seccomp(p)
    if notify_fd is not None:
        os.close(notify_fd)
    return program


def exec_dropped(p: Prepared, program: Program | OSError, report=None, by_fd: bool = False,
                 before_exec=None) -> None:
    """The execve, once drop_privileges is done. Never returns. `report` is called with the
    message if execve itself fails; `by_fd`: run the checked file itself (Program.exec), for
    `runp exec`, where a process in the container may race the check; `before_exec`: called
    right before the execve, with every privilege dropped and seccomp loaded (the
    startContainer hooks run there, as in runc's init)."""
    if before_exec is not None:
        before_exec()
    try:
        if isinstance(program, OSError):
            raise program
        env = dict(e.split("=", 1) for e in p.env)
        if by_fd:
            program.exec(env, p.seccomp is not None or p.seccomp_listener is not None)
        os.execve(p.path, p.args, env)
    except OSError as e:
        msg = f"runp: exec {p.args[0]}: {e.strerror}"
        if report is not None:
            report(msg)
        else:
            os.write(2, f"{msg}\n".encode())
        os._exit(127 if e.errno == 2 else 126)


class Program:
    """The file exec_process runs, held open since it was checked (CVE-2019-5736).

    Executing something reached through a /proc magic link, such as the entrypoint
    "/proc/self/exe" or a script "#!/proc/self/exe", runs the HOST's python (runp's own
    executable) with the container's credentials; the process can then open the host
    interpreter through its own /proc/self/exe and overwrite it once no python runs. So the
    program and each #! interpreter are opened in our root without magic links (openat2
    RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), and the binary at the end of the chain is run
    through its fd (execveat AT_EMPTY_PATH: glibc's fexecve), with the argv binfmt_script would
    have made. A path checked and then handed to execve could be swapped in between by a
    process already in the container (`runp exec`); an fd cannot. Running the final binary
    ourselves, rather than the script's fd, keeps the script's own path in argv (the kernel
    would pass "/dev/fd/N", and needs that fd left open into the container).

    The price: the kernel names the process (comm) after the file's own name, not the name it
    was called by: "busybox", not "sleep" for /bin/sleep -> busybox. So only `runp exec` runs
    by fd. The init's process is checked the same way and then run by path, as runc does:
    nothing of the container runs yet that could swap it (only a second container sharing a
    mount with it, which the CVE-2025-52881 class needs anyway)."""

    def __init__(self, fd: int, argv: list[str], scripts: list[int]) -> None:
        self.fd = fd
        self.argv = argv
        self.scripts = scripts  # fds of the #! scripts on the way, to check for exec permission

    def exec(self, env: dict[str, str], seccomp_on: bool) -> None:
        """execveat the binary, as the final user (after the privilege drop). Raises OSError,
        or returns where a seccomp profile forbids execveat: the caller execs the path then."""
        import errno
        from .linux import sys as lsys
        for fd in self.scripts:  # what binfmt_script's open of each script checks
            if lsys.exec_denied(fd):
                raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        try:
            os.execve(self.fd, self.argv, env)
        except OSError as e:
            # a seccomp profile that allows execve but not execveat: what runc would do
            if not (seccomp_on and e.errno in (errno.EPERM, errno.ENOSYS)):
                raise


SCRIPT_DEPTH = 5  # binfmt_script nests this deep (BINPRM_MAX_RECURSION), then ELOOP


def open_program(path: str, args: list[str]) -> Program:
    """Open `path` and its #! interpreters in our root (see Program). A magic link on the way
    is a RuntimeFailure; anything else an OSError as execve would raise it."""
    import errno
    from .linux import paths
    root = os.open("/", paths.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    scripts: list[int] = []
    argv = list(args)
    try:
        name = path
        for _ in range(SCRIPT_DEPTH + 1):
            fd = _open_exec(root, name)
            interp = _interpreter(fd)
            if interp is None:
                return Program(fd, argv, scripts)
            scripts.append(fd)
            i_name, i_arg = interp
            argv = [i_name, *([i_arg] if i_arg is not None else []), name, *argv[1:]]
            name = i_name
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    except BaseException:
        for fd in scripts:
            os.close(fd)
        raise
    finally:
        os.close(root)


def _open_exec(root: int, name: str) -> int:
    import errno
    from .linux import paths
    from .linux import sys as lsys
    full = name if name.startswith("/") else os.path.join(os.getcwd(), name)
    try:  # (NONBLOCK: a fifo must not hang us)
        return paths.open_in_root(root, full, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RuntimeFailure(f'unable to start container process: exec: "{name}": '
                                 "refusing to exec through a /proc magic link") from None
        if e.errno != errno.EACCES:
            raise OSError(e.errno, os.strerror(e.errno), name) from None
    # Unreadable even for us (root of a user namespace): executed as it is. Were it a script,
    # execveat refuses to run it through a close-on-exec fd (ENOENT); its interpreter could not
    # read it anyway.
    return lsys.openat2(root, full.lstrip("/") or ".", paths.O_PATH,
                        lsys.RESOLVE_IN_ROOT | lsys.RESOLVE_NO_MAGICLINKS)


def _interpreter(fd: int) -> tuple[str, str | None] | None:
    """The #! line of the file as binfmt_script reads it (fs/binfmt_script.c): the name up to
    a blank, the rest of the line, trimmed, as one optional argument. None: no script."""
    try:
        buf = os.pread(fd, 256, 0)  # BINPRM_BUF_SIZE
    except OSError:
        return None
    if not buf.startswith(b"#!"):
        return None
    line = buf[2:]
    nl = line.find(b"\n")
    if nl >= 0:
        line = line[:nl]
    elif len(buf) == 256:
        # no newline in the buffer: the kernel takes it only if the name ends inside it
        if not any(c in line.lstrip(b" \t") for c in (b" ", b"\t", b"\0")):
            return None  # (ENOEXEC: left to execveat, which says so)
        line = line[:-1]
    line = line.split(b"\0", 1)[0].strip(b" \t")
    if not line:
        return None
    sep = min((i for i in (line.find(b" "), line.find(b"\t")) if i >= 0), default=len(line))
    name, arg = line[:sep], line[sep:].lstrip(b" \t")
    return os.fsdecode(name), (os.fsdecode(arg) if arg else None)


_LSM: tuple[bool, bool] | None = None


def lsm_enabled() -> tuple[bool, bool]:
    """(AppArmor, SELinux) enabled in this kernel. Asked on the host (preload(), before
    pivot_root); after pivot_root /sys may be missing or the container's."""
    global _LSM
    if _LSM is None:
        try:
            with open("/sys/module/apparmor/parameters/enabled", "rb") as f:
                apparmor = f.read(1) == b"Y"
        except OSError:
            apparmor = False
        _LSM = (apparmor, os.path.exists("/sys/fs/selinux/enforce"))
    return _LSM


def note_ignored_labels(proc: Process | None, mount_label: str = "") -> None:
    """Labels for an LSM this host does not run are ignored, as runc and crun do; with a
    warning naming the field, as every field runp does not apply (issue #15)."""
    if not mount_label and (proc is None or not (proc.apparmor_profile or proc.selinux_label)):
        return
    apparmor, selinux = lsm_enabled()
    from .log import log
    if proc is not None and proc.apparmor_profile and not apparmor:
        log.warning(f'config.json: process.apparmorProfile: "{proc.apparmor_profile}" ignored: '
                    "AppArmor is not enabled")
    if proc is not None and proc.selinux_label and not selinux:
        log.warning(f'config.json: process.selinuxLabel: "{proc.selinux_label}" ignored: '
                    "SELinux is not enabled")
    if mount_label and not selinux:
        log.warning(f'config.json: linux.mountLabel: "{mount_label}" ignored: '
                    "SELinux is not enabled")


def _apply_lsm(proc: Process) -> None:
    """Where the LSM is enabled, request the label for the exec (runc does the same writes),
    through /proc/thread-self/attr of our own procfs (CVE-2019-16884, CVE-2025-52881)."""
    apparmor, selinux = lsm_enabled()
    if proc.apparmor_profile and apparmor:  # (attr/apparmor/ is Linux 5.8+)
        _write_attr(("apparmor/exec", "exec"), f"exec {proc.apparmor_profile}")
    if proc.selinux_label and selinux:
        _write_attr(("exec",), proc.selinux_label)


def _write_attr(names: tuple[str, ...], value: str) -> None:
    """Write the first of /proc/thread-self/attr/<name> that exists."""
    from .linux import procfs
    for name in names:
        try:
            procfs.write(f"thread-self/attr/{name}", value)
            return
        except FileNotFoundError:
            if name != names[-1]:
                continue
            raise RuntimeFailure(f"set LSM label ({name}): /proc/thread-self/attr/{name}: "
                                 "no such file or directory") from None
        except OSError as e:
            raise RuntimeFailure(f"set LSM label ({name}): {e.filename}: {e.strerror}") from None


def _drop(msg: str) -> None:
    """A warning already given (init.check_config, exec): the second parse says nothing."""


def _debug(msg: str) -> None:
    from .log import log
    log.debug(msg)


def _load_seccomp(p: Prepared) -> int | None:
    """Install the compiled filter (profiles with a notify listener were installed earlier)."""
    from .linux import seccomp
    return seccomp.install(p.seccomp)
