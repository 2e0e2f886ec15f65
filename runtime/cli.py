"""The runc-compatible command line. It only parses arguments and calls the library.

A small hand-written parser instead of argparse: it costs nothing to import, and it takes flags
exactly as runc's (urfave/cli) does: `--flag value`, `--flag=value`, `-f value`, booleans,
flags before or between positional arguments (but not after an exec command's first argument).
"""

import gc

# A runp call lives milliseconds and makes no garbage worth collecting; the cyclic collector
# would run during the imports and, worse, after create forks: it writes to every object it
# scans, so both processes copy those pages (copy-on-write). ~2.5 ms per `run`. Commands that
# then wait for a container for long (run, exec in the foreground, events) turn it back on.
gc.disable()

import _signal  # a built-in module, loaded at start-up: the signal numbers
from . import oslite as os  # os minus its 1 ms import (runtime/oslite.py)
import sys

from . import __version__
from .errors import RuntimeFailure, os_error_text
from .log import log

# flag spec: name -> (aliases, takes_value)
GLOBAL_FLAGS = {
    "root": (("--root",), True), "log": (("--log",), True), "log-format": (("--log-format",), True),
    "debug": (("--debug",), False), "systemd-cgroup": (("--systemd-cgroup",), False),
    "rootless": (("--rootless",), True), "criu": (("--criu",), True),
    "help": (("--help", "-h"), False), "version": (("--version", "-v"), False),
}
CREATE_FLAGS = {
    "bundle": (("--bundle", "-b"), True), "console-socket": (("--console-socket",), True),
    "pid-file": (("--pid-file",), True), "no-pivot": (("--no-pivot",), False),
    "no-new-keyring": (("--no-new-keyring",), False), "preserve-fds": (("--preserve-fds",), True),
    "pidfd-socket": (("--pidfd-socket",), True),
}
COMMANDS: dict[str, dict] = {
    "create": CREATE_FLAGS,
    "run": {**CREATE_FLAGS, "detach": (("--detach", "-d"), False), "keep": (("--keep",), False),
            "no-subreaper": (("--no-subreaper",), False)},
    "start": {},
    "state": {},
    "kill": {"all": (("--all", "-a"), False)},
    "delete": {"force": (("--force", "-f"), False)},
    "list": {"format": (("--format", "-f"), True), "quiet": (("--quiet", "-q"), False)},
    "spec": {"bundle": (("--bundle", "-b"), True), "rootless": (("--rootless",), False)},
    "pause": {},
    "resume": {},
    "check": {"bundle": (("--bundle", "-b"), True)},
    "exec": {  # "list": a repeatable flag, its values collected in order
        "process": (("--process", "-p"), True), "tty": (("--tty", "-t"), False),
        "cwd": (("--cwd",), True), "env": (("--env", "-e"), "list"),
        "user": (("--user", "-u"), True), "additional-gids": (("--additional-gids", "-g"), "list"),
        "cap": (("--cap", "-c"), "list"), "no-new-privs": (("--no-new-privs",), False),
        "process-label": (("--process-label",), True), "apparmor": (("--apparmor",), True),
        "detach": (("--detach", "-d"), False), "pid-file": (("--pid-file",), True),
        "console-socket": (("--console-socket",), True), "preserve-fds": (("--preserve-fds",), True),
        "pidfd-socket": (("--pidfd-socket",), True),
        "ignore-paused": (("--ignore-paused",), False), "cgroup": (("--cgroup",), "list"),
        "help": (("--help", "-h"), False),
    },
    # runtime/features.py, ps.py, update.py, events.py, checkpoint.py
    "features": {},
    "ps": {"format": (("--format", "-f"), True), "help": (("--help", "-h"), False)},
    "events": {"stats": (("--stats",), False), "interval": (("--interval",), True)},
}
# commands that move a process into a cgroup: they start the kernel's wait for that early
MOVES_A_PROCESS = ("create", "run", "exec", "restore")
USAGE = """usage: runp [global options] command [command options] [arguments...]

runp is a command line client for running applications packaged according to the Open
Container Initiative (OCI) format; a drop-in replacement for runc.

commands:
  create   create a container          start    executes the user defined process in a created container
  run      create and run a container  state    output the state of a container
  kill     send a signal to a container's init process
  delete   delete any resources held by the container
  list     lists containers            spec     create a new specification file
  pause    pause all processes         resume   resume all processes that have been paused
  check    validate a bundle's config.json against the runtime-spec JSON Schema
  exec     execute new process inside the container
  ps       list container processes    update   update container resource constraints
  events   stats and OOM events        features show the enabled features
  checkpoint, restore    with criu (they fail with the reason when it cannot work here)

global options:
  --root value        root directory for storage of container state (default: "/run/runp",
                      or $XDG_RUNTIME_DIR/runp when rootless)
  --log value         set the log file to write runp logs to (default is stderr)
  --log-format value  set the log format ('text' (default), or 'json')
  --debug             enable debug logging
  --systemd-cgroup    use the systemd cgroup driver
  --rootless value    ignore cgroup permission errors ('true', 'false', or 'auto') (default: "auto")
  --criu value        path to the criu binary used for checkpoint and restore (default: "criu")
  --version, -v       print the version
"""


class UsageError(RuntimeFailure):
    pass


def parse_flags(args: list[str], spec: dict, stop_at_positional: bool = False) -> tuple[dict, list[str]]:
    lookup = {alias: (name, takes) for name, (aliases, takes) in spec.items() for alias in aliases}
    flags: dict = {}
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--" and not pos_stop(pos, stop_at_positional):
            pos.extend(args[i + 1:])
            break
        if a.startswith("-") and a != "-" and not pos_stop(pos, stop_at_positional):
            name_part, eq, value = a.partition("=")
            if name_part not in lookup and name_part.startswith("-") and not name_part.startswith("--"):
                name_part = "-" + name_part  # urfave accepts -bundle as --bundle
                if name_part not in lookup:
                    name_part = a.partition("=")[0]
            if name_part not in lookup:
                raise UsageError(f"flag provided but not defined: {a.partition('=')[0]}")
            name, takes = lookup[name_part]
            if takes:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise UsageError(f"flag needs an argument: {a}")
                    value = args[i]
                if takes == "list":
                    flags.setdefault(name, []).append(value)
                else:
                    flags[name] = value
            else:
                flags[name] = value.lower() not in ("false", "0") if eq else True
        else:
            pos.append(a)
        i += 1
    return flags, pos


def pos_stop(pos: list[str], stop: bool) -> bool:
    return stop and bool(pos)


def main(argv: list[str] | None = None) -> None:
    code = run_cli(sys.argv[1:] if argv is None else argv)
    # Leave without the interpreter's teardown (freeing every module and object costs a few
    # milliseconds on each call, for nothing): flush what we wrote, then exit at once.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # e.g. stdout was a pipe closed early: as Python exits
        code = code or 120
    os._exit(code)


def run_cli(argv: list[str]) -> int:
    # global flags come before the command
    i = 0
    gargs: list[str] = []
    while i < len(argv) and argv[i].startswith("-"):
        gargs.append(argv[i])
        name = argv[i].partition("=")[0]
        if "=" not in argv[i] and any(name in al and t for al, t in GLOBAL_FLAGS.values()):
            i += 1
            if i < len(argv):
                gargs.append(argv[i])
        i += 1
    try:
        gflags, _ = parse_flags(gargs, GLOBAL_FLAGS)
    except UsageError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    fmt = gflags.get("log-format", "text")
    if fmt not in ("text", "json"):
        sys.stderr.write(f"invalid log-format: {fmt}\n")
        return 1
    if gflags.get("version"):  # as runc: before the log is opened
        sys.stdout.write(version_text())
        return 0
    try:
        log.configure(gflags.get("log"), fmt, bool(gflags.get("debug")))
    except OSError as e:  # every command fails, as runc's; the line goes to stderr instead
        return _fail(f"open {gflags['log']}: {os_error_text(e)}", 1)
    rest = argv[i:]
    if not rest or gflags.get("help") or rest[0] in ("help", "h"):
        sys.stdout.write(USAGE)
        return 0
    cmd, cargs = rest[0], rest[1:]
    if cmd in MOVES_A_PROCESS:
        from .linux import cgroup_prime
        cgroup_prime.start()
    if cmd not in COMMANDS and cmd not in _EXTRA_COMMANDS:
        return _fail(f"No help topic for '{cmd}'", 3, prefix="")
    stop = cmd in STOP_AT_POSITIONAL  # its own flags end at the id: `exec ID ls -l`
    if not stop and ("--help" in cargs or "-h" in cargs):
        sys.stdout.write(f"usage: runp {cmd} [command options] <container-id>\n")
        return 0
    root = gflags.get("root") or os.environ.get("RUNP_ROOT")
    if not root:
        from .rootless import default_root, make_xdg_root
        root, xdg = default_root()
        if xdg and cmd in ("create", "run"):
            make_xdg_root(root)
    try:
        if cmd in COMMANDS:
            flags, pos = parse_flags(cargs, COMMANDS[cmd], stop_at_positional=stop)
            if flags.pop("help", False):
                sys.stdout.write(f"usage: runp {cmd} [command options] <container-id>\n")
                return 0
            return _DISPATCH[cmd](root, flags, pos, gflags) or 0
        return _EXTRA_COMMANDS[cmd](root, cargs, gflags) or 0
    except UsageError as e:
        return _fail(str(e), e.exit_code)
    except RuntimeFailure as e:
        return _failed(cmd, str(e), e.exit_code)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        return _failed(cmd, f"{where}{e.strerror or e}", 1)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug: still one line for the caller, the status
        import traceback     # of a failed runp (not 1 from `exec`), and the traceback to debug it
        traceback.print_exc()
        return _failed(cmd, f"internal error: {type(e).__name__}: {e}", 1)


# `runc exec` exits 255 when runc itself fails (container stopped or paused, --pid-file,
# process not startable, ...): a caller tells that from the process's own status, which runp
# returns unchanged, as runc does. Its usage errors (missing id, unknown flag) stay 1.
EXEC_FAILED = 255


def _failed(cmd: str, msg: str, code: int) -> int:
    """A command failed after its arguments were parsed: runc's exit status and wording."""
    if cmd == "exec":
        return _fail(f"exec failed: {msg}", EXEC_FAILED)
    return _fail(msg, code)


def _fail(msg: str, code: int, prefix: str = "runp: ") -> int:
    """The error line: in the --log file and on stderr, or (without --log, in JSON format)
    on stderr as a JSON line, as runc's logger does."""
    if log.path or log.fmt == "json":
        log.error(msg)
    if not log.path and log.fmt == "json":
        return code
    sys.stderr.write(f"{msg}\n" if msg.startswith("config.json") else f"{prefix}{msg}\n")
    return code


def version_text() -> str:
    from .features import libseccomp_version  # the binding has no version call: ask the C library
    from .spec import SPEC_VERSION
    libseccomp = libseccomp_version() or "none"
    return (f"runp version {__version__}\ncommit: {__version__}\nspec: {SPEC_VERSION}\n"
            f"python: {sys.version.split()[0]}\nlibseccomp: {libseccomp}\n")


def _one_id(pos: list[str], cmd: str, extra: int = 0) -> str:
    """The container id; runc's checkArgs words: exactly one argument, or (kill's signal) one
    to 1 + extra."""
    if not extra and len(pos) != 1:
        raise UsageError(f'"{cmd}" requires exactly 1 argument(s)')
    if not pos:
        raise UsageError(f'"{cmd}" requires a minimum of 1 argument(s)')
    if len(pos) > 1 + extra:
        raise UsageError(f'"{cmd}" requires a maximum of {1 + extra} argument(s)')
    return pos[0]


def _no_args(pos: list[str], cmd: str) -> None:
    if pos:
        raise UsageError(f'"{cmd}" requires exactly 0 argument(s)')


def _create_opts(flags: dict, gflags: dict):
    from .create import CreateOptions
    from .rootless import parse_flag
    pf = flags.get("preserve-fds", "0")
    if not str(pf).isdigit():
        raise UsageError(f"invalid value {pf!r} for flag --preserve-fds")
    return CreateOptions(pid_file=flags.get("pid-file"), console_socket=flags.get("console-socket"),
                         no_pivot=bool(flags.get("no-pivot")),
                         no_new_keyring=bool(flags.get("no-new-keyring")),
                         preserve_fds=int(pf), systemd_cgroup=bool(gflags.get("systemd-cgroup")),
                         rootless=parse_flag(gflags.get("rootless")),
                         pidfd_socket=flags.get("pidfd-socket"))


def cmd_create(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .container import Container
    cid = _one_id(pos, "create")
    Container.create(root, cid, flags.get("bundle") or ".", _create_opts(flags, gflags))
    return 0


def cmd_run(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .run import run
    cid = _one_id(pos, "run")
    return run(root, cid, flags.get("bundle") or ".", _create_opts(flags, gflags),
               detach=bool(flags.get("detach")), keep=bool(flags.get("keep")),
               subreaper=not flags.get("no-subreaper"))


def cmd_start(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .container import Container
    Container(root, _one_id(pos, "start")).start()
    return 0


def cmd_state(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from . import jsonlite
    from .container import Container
    st = Container(root, _one_id(pos, "state")).oci_state()
    sys.stdout.write(jsonlite.dumps_indent(st) + "\n")
    return 0


# Signal numbers by name, from the C library (mips numbers them its own way); _signal, as the
# signal module's enums cost milliseconds
SIGNALS = {n[3:]: v for n, v in vars(_signal).items()
           if n.startswith("SIG") and n[3:4] != "_" and not n.startswith("SIGRT")}


def parse_signal(s: str) -> int:
    """A signal by number, name or SIG-name, any case; RTMIN+n / RTMAX-n too (as runc). 0 is
    kill(2)'s liveness probe: nothing is sent, the container must be there to receive it."""
    if s.isdigit():
        n = int(s)
        if not 0 <= n <= _signal.SIGRTMAX:
            raise UsageError(f"invalid signal number {s}")
        return n
    name = s.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name in SIGNALS:
        return SIGNALS[name]
    lo, hi = _signal.SIGRTMIN, _signal.SIGRTMAX
    for base, n0, sign in (("RTMIN", lo, 1), ("RTMAX", hi, -1)):
        if name == base:
            return n0
        if name.startswith(base) and name[5:6] in "+-" and name[6:].isdigit():
            n = n0 + sign * int(name[6:]) if name[5] == ("+" if sign > 0 else "-") else 0
            if lo <= n <= hi:
                return n
    raise UsageError(f"unknown signal {s!r}")


def cmd_kill(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .container import Container
    from .errors import ContainerNotFound
    c = Container(root, _one_id(pos, "kill", extra=1))
    if not c.dir.exists():  # as runc: an unknown id is reported before a bad signal
        raise ContainerNotFound(c.id)
    sig = parse_signal(pos[1]) if len(pos) > 1 else 15
    c.kill(sig, all_processes=bool(flags.get("all")))
    return 0


def cmd_delete(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .errors import ContainerNotFound
    from .state import StateDir
    force = bool(flags.get("force"))
    cid = _one_id(pos, "delete")  # runc 1.1.5 takes exactly one id
    if force and not StateDir(root, cid).exists():  # (StateDir checks the id's format)
        # containerd's shim runs `delete --force` once more after each container's delete
        # (two per pod): the container is gone, and the lifecycle code need not be loaded
        return 0
    from .container import Container
    try:
        Container(root, cid).delete(force=force)
    except ContainerNotFound:
        if not force:
            raise
    return 0


def cmd_list(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .container import Container
    from .state import list_ids
    _no_args(pos, "list")
    fmt = flags.get("format", "table")
    if fmt not in ("table", "json"):
        raise UsageError(f"invalid format option {fmt!r}")
    states = []
    for cid in list_ids(root):
        try:
            c = Container(root, cid)
            st = c.oci_state()
            st["owner"] = _owner(c.dir.path)
            states.append(st)
        except (RuntimeFailure, OSError, ValueError, KeyError):  # gone meanwhile, or a broken
            continue                                               # state.json (`state` says which)
    if flags.get("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
        return 0
    if fmt == "json":
        from . import jsonlite
        sys.stdout.write(jsonlite.dumps(states, compact=True) + "\n")
        return 0
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]] for s in states]
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(6)]
    for r in rows:
        sys.stdout.write("".join(v.ljust(w) if i < 5 else v for i, (v, w) in enumerate(zip(r, widths))) + "\n")
    return 0


def _owner(path: str) -> str:
    uid = os.stat(path).st_uid
    try:
        with open("/etc/passwd") as f:
            for line in f:
                p = line.split(":")
                if len(p) > 2 and p[2] == str(uid):
                    return p[0]
    except OSError:
        pass
    return f"#{uid}"


def cmd_spec(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from . import jsonlite
    from .spec import default_spec
    _no_args(pos, "spec")
    bundle = flags.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise RuntimeFailure(f"File {path} exists. Remove it first")
    data = jsonlite.dumps_indent(default_spec(rootless=bool(flags.get("rootless"))), "\t")
    with open(path, "w") as f:
        f.write(data)
    return 0


def cmd_pause(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .container import Container
    Container(root, _one_id(pos, "pause")).pause()
    return 0


def cmd_resume(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .container import Container
    Container(root, _one_id(pos, "resume")).resume()
    return 0


def cmd_check(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .check import check_bundle
    problems = check_bundle(flags.get("bundle") or ".")
    for p in problems:
        sys.stdout.write(p + "\n")
    return 1 if problems else 0


def cmd_exec(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .exec import ExecOptions, exec_in
    if not pos:
        raise UsageError('"exec" requires a minimum of 1 argument(s)')
    pf = flags.get("preserve-fds", "0")
    if not str(pf).isdigit():
        raise UsageError(f"invalid value {pf!r} for flag --preserve-fds")
    o = ExecOptions(
        args=pos[1:], process_file=flags.get("process"), tty=bool(flags.get("tty")),
        cwd=flags.get("cwd"), env=flags.get("env", []), user=flags.get("user"),
        additional_gids=flags.get("additional-gids", []), caps=flags.get("cap", []),
        no_new_privs=flags.get("no-new-privs"), process_label=flags.get("process-label"),
        apparmor=flags.get("apparmor"), detach=bool(flags.get("detach")),
        pid_file=flags.get("pid-file"), console_socket=flags.get("console-socket"),
        pidfd_socket=flags.get("pidfd-socket"), preserve_fds=int(pf),
        ignore_paused=bool(flags.get("ignore-paused")),
        cgroup=flags.get("cgroup", []))
    return exec_in(root, pos[0], o)


def cmd_features(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .features import print_features
    _no_args(pos, "features")
    print_features(sys.stdout, gflags.get("criu"))
    return 0


def cmd_ps(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .ps import ps
    if not pos:
        raise UsageError('"ps" requires a minimum of 1 argument(s)')
    return ps(root, pos[0], flags.get("format", "table"), pos[1:], sys.stdout)


def cmd_update(root: str, args: list[str], gflags: dict) -> int:
    from .update import UPDATE_FLAGS, update
    flags, pos = parse_flags(args, UPDATE_FLAGS)
    update(root, _one_id(pos, "update"), flags, sys.stdin)
    return 0


def cmd_events(root: str, flags: dict, pos: list[str], gflags: dict) -> int:
    from .events import DEFAULT_INTERVAL, events, parse_duration
    try:
        interval = parse_duration(flags["interval"]) if "interval" in flags else DEFAULT_INTERVAL
    except ValueError as e:
        raise UsageError(f"invalid value {flags['interval']!r} for flag --interval: {e}") from None
    return events(root, _one_id(pos, "events"), bool(flags.get("stats")), interval, sys.stdout)


def cmd_checkpoint(root: str, args: list[str], gflags: dict) -> int:
    from .checkpoint import CHECKPOINT_FLAGS, checkpoint
    flags, pos = parse_flags(args, CHECKPOINT_FLAGS)
    checkpoint(root, _one_id(pos, "checkpoint"), gflags.get("criu"), flags)
    return 0


def cmd_restore(root: str, args: list[str], gflags: dict) -> int:
    from .checkpoint import RESTORE_FLAGS, restore
    flags, pos = parse_flags(args, RESTORE_FLAGS)
    return restore(root, _one_id(pos, "restore"), gflags.get("criu"), flags,
                   systemd_cgroup=bool(gflags.get("systemd-cgroup")))


STOP_AT_POSITIONAL = {"exec", "ps"}
_DISPATCH = {
    "create": cmd_create, "run": cmd_run, "start": cmd_start, "state": cmd_state,
    "kill": cmd_kill, "delete": cmd_delete, "list": cmd_list, "spec": cmd_spec,
    "pause": cmd_pause, "resume": cmd_resume, "check": cmd_check, "exec": cmd_exec,
    "features": cmd_features, "ps": cmd_ps, "events": cmd_events,
}
# commands whose argument parsing lives with their implementation (exec, ps, update, ...)
_EXTRA_COMMANDS: dict = {"update": cmd_update, "checkpoint": cmd_checkpoint,
                         "restore": cmd_restore}
