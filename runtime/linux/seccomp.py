"""linux.seccomp: validate the profile early, compile it with libseccomp, install it before exec.

`validate` is pure Python so `create` can reject a bad profile before it builds anything.
`build` imports the libseccomp binding (Debian python3-seccomp) and exports the filter as BPF;
`install` is then a single seccomp(2) call (runc also installs libseccomp's BPF itself), so the
slow part can run before `start` and only the install sits between `start` and exec.
Semantics follow runc: SCMP_ACT_KILL is KILL_THREAD, ERRNO/TRACE default to EPERM, syscall names
this libseccomp does not know are skipped, a rule whose action equals the default action is
skipped, several conditions on one argument become separate rules, the no_new_privs bit is
never set implicitly, and with no `flags` at all SPEC_ALLOW is set when supported. Also as
runc: syscall numbers above the highest one the profile names get ENOSYS unless the default
action lets calls through (see enosys_stub), so libc falls back from syscalls newer than the
profile (clone3 -> clone) instead of failing with the default errno.
"""
from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing costs ~2 ms to import; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any

from ..errors import ConfigError, RuntimeFailure, json_type
from .arch import AUDIT, NR, X32_SYSCALL_BIT

ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
})
# Actions that carry a return value (errnoRet / defaultErrnoRet); the spec says any other
# action given an errno MUST fail.
ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
ARCHES = frozenset(AUDIT)  # every SCMP_ARCH_* config-linux.md lists
FLAGS = frozenset({
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
})
OPS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})
# The init reports the notify fd to its parent with write(2) (runc does the same); a filter
# that sends write to the agent would deadlock that handshake.
NOTIFY_FORBIDDEN = frozenset({"write"})

EPERM = 1
_U64 = (1 << 64) - 1
_MAX_ERRNO_RET = 0xFFFF  # SECCOMP_RET_DATA is 16 bits
_OPTIMIZE_ABOVE = 32  # runc: binary-tree optimisation only for longer rule sets (libseccomp bug)

# The ENOSYS stub put before libseccomp's program (classic BPF, struct sock_filter).
_BPF_LD_W_ABS = 0x20    # BPF_LD | BPF_W | BPF_ABS: load a u32 of struct seccomp_data
_BPF_JEQ_K = 0x15
_BPF_JGT_K = 0x25
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_DATA_NR, _DATA_ARCH = 0, 4               # offsets in struct seccomp_data
_SECCOMP_RET_ERRNO = 0x00050000
# libseccomp's SCMP_ARCH_* tokens are the kernel's AUDIT_ARCH_* values (AUDIT), except X32
_AUDIT_X86_64 = AUDIT["SCMP_ARCH_X86_64"]
_AUDIT_S390, _AUDIT_S390X = AUDIT["SCMP_ARCH_S390"], AUDIT["SCMP_ARCH_S390X"]
# Default actions that let a call through (runc: a tracer or the kernel answers ENOSYS itself)
_NO_STUB_DEFAULTS = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"})

# seccomp(2) flag bits: we install the exported BPF ourselves (as runc does), which also
# allows WAIT_KILLABLE_RECV, a flag libseccomp 2.5 does not know.
_SECCOMP_SET_MODE_FILTER = 1
_FILTER_FLAG_LOG = 1 << 1
_FILTER_FLAG_SPEC_ALLOW = 1 << 2
_FILTER_FLAG_NEW_LISTENER = 1 << 3
_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5


def enabled(cfg: dict | None) -> bool:
    """runc treats a profile with neither defaultAction nor syscalls as "no seccomp"."""
    return bool(cfg) and bool(cfg.get("defaultAction") or cfg.get("syscalls"))


def validate(cfg: dict | None, path: str = "linux.seccomp") -> None:
    """Check linux.seccomp without libseccomp; raises ConfigError naming the JSON path."""
    if cfg is None:
        return
    if not isinstance(cfg, dict):
        raise ConfigError(path, f"must be an object, not {json_type(cfg)}")
    syscalls = cfg.get("syscalls")
    if syscalls is not None and not isinstance(syscalls, list):
        raise ConfigError(f"{path}.syscalls", f"must be an array, not {json_type(syscalls)}")
    if not enabled(cfg):
        return
    default = cfg.get("defaultAction")
    if default is None:
        raise ConfigError(f"{path}.defaultAction", "is required")
    _check_action(default, f"{path}.defaultAction")
    if default == "SCMP_ACT_NOTIFY":
        raise ConfigError(f"{path}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    _check_errno(cfg, "defaultErrnoRet", default, path)

    arches = cfg.get("architectures")
    if arches is not None:
        if not isinstance(arches, list):
            raise ConfigError(f"{path}.architectures",
                              f"must be an array, not {json_type(arches)}")
        for i, a in enumerate(arches):
            where = f"{path}.architectures[{i}]"
            if not isinstance(a, str):
                raise ConfigError(where, f"must be a string, not {json_type(a)}")
            if a not in ARCHES:
                raise ConfigError(where, f'unknown architecture "{a}"')
    flags = cfg.get("flags")
    if flags is not None:
        if not isinstance(flags, list):
            raise ConfigError(f"{path}.flags", f"must be an array, not {json_type(flags)}")
        for i, f in enumerate(flags):
            where = f"{path}.flags[{i}]"
            if not isinstance(f, str):
                raise ConfigError(where, f"must be a string, not {json_type(f)}")
            if f not in FLAGS:
                raise ConfigError(where, f'unknown flag "{f}"')
    for key in ("listenerPath", "listenerMetadata"):
        val = cfg.get(key)
        if val is not None and not isinstance(val, str):
            raise ConfigError(f"{path}.{key}", f"must be a string, not {json_type(val)}")
    if cfg.get("listenerMetadata") and not cfg.get("listenerPath"):
        raise ConfigError(f"{path}.listenerMetadata", "must not be set without listenerPath")

    notify = False
    for i, call in enumerate(syscalls or ()):
        where = f"{path}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise ConfigError(where, f"must be an object, not {json_type(call)}")
        names = call.get("names")
        if names is None:
            raise ConfigError(f"{where}.names", "is required")
        if not isinstance(names, list):
            raise ConfigError(f"{where}.names", f"must be an array, not {json_type(names)}")
        if not names:
            raise ConfigError(f"{where}.names", "must contain at least one entry")
        for j, n in enumerate(names):
            if not isinstance(n, str):
                raise ConfigError(f"{where}.names[{j}]", f"must be a string, not {json_type(n)}")
            if not n:
                raise ConfigError(f"{where}.names[{j}]", "must not be empty")
        action = call.get("action")
        if action is None:
            raise ConfigError(f"{where}.action", "is required")
        _check_action(action, f"{where}.action")
        _check_errno(call, "errnoRet", action, where)
        if action == "SCMP_ACT_NOTIFY":
            notify = True
            for j, n in enumerate(names):
                if n in NOTIFY_FORBIDDEN:
                    raise ConfigError(f"{where}.names[{j}]",
                                      f"SCMP_ACT_NOTIFY cannot be used for the {n} syscall")
        args = call.get("args")
        if args is None:
            continue
        if not isinstance(args, list):
            raise ConfigError(f"{where}.args", f"must be an array, not {json_type(args)}")
        for j, arg in enumerate(args):
            _check_arg(arg, f"{where}.args[{j}]")
    if notify and not cfg.get("listenerPath"):
        raise ConfigError(f"{path}.listenerPath", "is required when SCMP_ACT_NOTIFY is used")


class Program:
    """A compiled filter: classic BPF plus the seccomp(2) flags to install it with."""

    __slots__ = ("bpf", "flags", "notify", "nr")

    def __init__(self, bpf: bytes, flags: int, notify: bool, nr: int) -> None:
        self.bpf = bpf        # struct sock_filter[], 8 bytes each
        self.flags = flags    # SECCOMP_FILTER_FLAG_* bits
        self.notify = notify  # install() returns a listener fd
        self.nr = nr          # this arch's seccomp(2) syscall number


def load(cfg: dict | None, path: str = "linux.seccomp") -> int | None:
    """build() then install(): load the profile into this process; return the notify fd."""
    return install(build(cfg, path))


def build(cfg: dict | None, path: str = "linux.seccomp") -> Program | None:
    """Validate and compile the filter with libseccomp, without loading it.

    This is the slow part (about 15 ms for a podman-sized profile with three architectures),
    so the init can do it before it reports ready and only install() after `start`; it
    touches nothing process-wide, so it may also run in the runtime before forking the init.
    Returns None when the config has no seccomp profile.
    """
    validate(cfg, path)
    if cfg is None or not enabled(cfg):
        return None
    import seccomp as scmp

    default_name = cfg["defaultAction"]
    default = _action(scmp, default_name, cfg.get("defaultErrnoRet"))
    try:
        filt = scmp.SyscallFilter(default)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"{path}.defaultAction", f"libseccomp rejected it: {_why(e)}") from None

    for i, a in enumerate(cfg.get("architectures") or ()):
        arch = getattr(scmp.Arch, a[len("SCMP_ARCH_"):], None)
        if arch is None:
            raise ConfigError(f"{path}.architectures[{i}]",
                              f'architecture "{a}" is not supported by this libseccomp')
        try:
            filt.add_arch(arch)
        except RuntimeError as e:
            if abs(_errno(e)) != 17:  # EEXIST: the native arch is always there
                raise ConfigError(f"{path}.architectures[{i}]", _why(e)) from None

    # Flags go to our own seccomp(2) call; setting the libseccomp attribute first checks that
    # this kernel supports the flag.
    flags = cfg.get("flags")
    raw_flags = 0
    if flags is None:
        try:  # runc's default when the config names no flags at all
            filt.set_attr(scmp.Attr.CTL_SSB, 1)
            raw_flags |= _FILTER_FLAG_SPEC_ALLOW
        except (RuntimeError, ValueError):
            pass
    for i, f in enumerate(flags or ()):
        try:
            if f == "SECCOMP_FILTER_FLAG_LOG":
                filt.set_attr(scmp.Attr.CTL_LOG, 1)
                raw_flags |= _FILTER_FLAG_LOG
            elif f == "SECCOMP_FILTER_FLAG_SPEC_ALLOW":
                filt.set_attr(scmp.Attr.CTL_SSB, 1)
                raw_flags |= _FILTER_FLAG_SPEC_ALLOW
            elif f == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
                # libseccomp 2.5 has no attribute for it; the kernel checks it at install().
                raw_flags |= _FILTER_FLAG_WAIT_KILLABLE_RECV
            # SECCOMP_FILTER_FLAG_TSYNC: the init is single-threaded; runc ignores it too.
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"{path}.flags[{i}]",
                              f'flag "{f}" is not supported here: {_why(e)}') from None

    syscalls = cfg.get("syscalls") or ()
    if sum(len(c["names"]) for c in syscalls) > _OPTIMIZE_ABOVE:
        try:
            filt.set_attr(scmp.Attr.CTL_OPTIMIZE, 2)
        except (RuntimeError, ValueError):
            pass

    notify = False
    for i, call in enumerate(syscalls):
        where = f"{path}.syscalls[{i}]"
        act_name = call["action"]
        act = _action(scmp, act_name, call.get("errnoRet"))
        if act == default:
            continue  # libseccomp refuses a rule that repeats the default action
        groups = _condition_groups(scmp, call.get("args") or ())
        for name in call["names"]:
            if scmp.resolve_syscall(scmp.Arch.NATIVE, name) == -1:
                continue  # unknown to this libseccomp: skipped, as runc does
            notify = notify or act_name == "SCMP_ACT_NOTIFY"
            for conds in groups:
                try:
                    filt.add_rule(act, name, *conds)
                except (RuntimeError, ValueError, TypeError) as e:
                    raise ConfigError(where, f'cannot add rule for "{name}": {_why(e)}') from None

    if notify:
        raw_flags |= _FILTER_FLAG_NEW_LISTENER
    else:
        # The kernel rejects WAIT_KILLABLE_RECV without a listener; with no notify rule the
        # flag has no meaning, so it is dropped.
        raw_flags &= ~_FILTER_FLAG_WAIT_KILLABLE_RECV
    memfd = os.memfd_create("runp-seccomp", os.MFD_CLOEXEC)
    with open(memfd, "w+b", buffering=0) as f:
        filt.export_bpf(f)
        bpf = os.pread(memfd, os.fstat(memfd).st_size, 0)
    if default_name not in _NO_STUB_DEFAULTS and not (
            default_name == "SCMP_ACT_ERRNO" and cfg.get("defaultErrnoRet") == errno.ENOSYS):
        bpf = enosys_stub(last_syscalls(scmp, cfg), errno.ENOSYS) + bpf
    return Program(bpf, raw_flags, notify, NR["seccomp"])


def last_syscalls(scmp: Any, cfg: dict) -> dict[int, tuple[int, int]]:
    """AUDIT_ARCH -> (highest syscall number the profile names, the same for x32 calls; 0 for
    none), for the profile's architectures and the native one.

    Every rule counts, whatever its action, and names unknown for an architecture do not (as
    runc). runc 1.1.5 left the native architecture out when `architectures` did not name it,
    so a profile without that list got no stub at all; runc 1.1.15 and later add it, as here.
    """
    names = {n for call in cfg.get("syscalls") or () for n in call["names"]}
    native = scmp.system_arch()
    tokens = {native - (1 << 32) if native >= 1 << 31 else native}
    for a in cfg.get("architectures") or ():
        tokens.add(getattr(scmp.Arch, a[len("SCMP_ARCH_"):]))   # build() checked they exist
    last: dict[int, tuple[int, int]] = {}
    for token in tokens:
        top = max((scmp.resolve_syscall(token, n) for n in names), default=0)
        if top <= 0:
            continue
        if token == scmp.Arch.X32:
            prev = last.get(_AUDIT_X86_64, (0, 0))
            last[_AUDIT_X86_64] = (prev[0], top)
        else:
            audit = token & 0xFFFFFFFF
            prev = last.get(audit, (0, 0))
            last[audit] = (top, prev[1])
    return last


def enosys_stub(last: dict[int, tuple[int, int]], enosys: int) -> bytes:
    """BPF to run before libseccomp's filter: a call whose number is above the highest one the
    profile names for its architecture (last_syscalls) returns ENOSYS, as from a kernel that
    lacks it; any other call, or an architecture not in `last`, falls through to the filter.

    The same decisions as runc's patchbpf stub (x86_64 and x32 told apart by the x32 bit;
    s390's setup(0), through which the kernel multiplexes numbers it does not know, also gets
    ENOSYS), in a layout of our own where every jump goes forward within the stub: each
    section is a few instructions, so no offset comes near the 255 a conditional jump can
    reach.
    """
    if not last:
        return b""
    arches = sorted(last)
    prog: list = [(_BPF_LD_W_ABS, _DATA_ARCH, None, None)]
    for i, audit in enumerate(arches):
        prog.append((_BPF_JEQ_K, audit, f"arch{audit}",
                     "filter" if i == len(arches) - 1 else None))
    for audit in arches:
        top, top_x32 = last[audit]
        prog += [f"arch{audit}", (_BPF_LD_W_ABS, _DATA_NR, None, None)]
        if audit in (_AUDIT_S390, _AUDIT_S390X):
            prog.append((_BPF_JEQ_K, 0, "enosys", None))
        if audit == _AUDIT_X86_64:
            prog.append((_BPF_JSET_K, X32_SYSCALL_BIT, "x32" if top_x32 else "filter",
                         None if top else "filter"))
        if top:
            prog.append((_BPF_JGT_K, top, "enosys", "filter"))
        if top_x32:
            prog += ["x32", (_BPF_JGT_K, top_x32, "enosys", "filter")]
    prog += ["enosys", (_BPF_RET_K, _SECCOMP_RET_ERRNO | enosys, None, None), "filter"]
    return _assemble(prog)


def _assemble(prog: list) -> bytes:
    """struct sock_filter[] from instructions (code, k, jump-if-true, jump-if-false) whose
    targets are labels (the strings in `prog`) or None for the next instruction."""
    import struct
    at: dict[str, int] = {}
    n = 0
    for item in prog:
        if isinstance(item, str):
            at[item] = n
        else:
            n += 1
    insn = struct.Struct("=HBBI")
    out = []
    for item in prog:
        if isinstance(item, str):
            continue
        code, k, jt, jf = item
        pc = len(out)
        # bytes range 0-255: pack fails loudly on a backward or too long jump
        out.append(insn.pack(code, 0 if jt is None else at[jt] - pc - 1,
                             0 if jf is None else at[jf] - pc - 1, k))
    return b"".join(out)


def install(prog: Program | None) -> int | None:
    """seccomp(SECCOMP_SET_MODE_FILTER) with a compiled program; return the notify fd, if any.

    Needs no_new_privs already set or CAP_SYS_ADMIN: like runc, loading never sets
    no_new_privs itself (that is process.noNewPrivileges' job). The listener fd is
    close-on-exec; hand it to the runtime (which calls send_notify_fd) before exec.
    Through linux/libc (_ctypes), not the ctypes package: nothing more to import in the init.
    """
    if prog is None:
        return None
    import struct

    from . import libc
    insns = libc.buffer(prog.bpf)
    fprog = libc.buffer(struct.pack("@HP", len(prog.bpf) // 8, libc.address(insns)))
    ret = libc.syscall(prog.nr, _SECCOMP_SET_MODE_FILTER, prog.flags, fprog)
    if ret == -1:
        err = libc.get_errno()
        raise OSError(err, f"loading seccomp filter: {os.strerror(err)}")
    return ret if prog.notify else None


def send_notify_fd(listener_path: str, fd: int, state_json: bytes, metadata: str | None,
                   *, pid: int | None = None) -> None:
    """Send the runtime-spec ContainerProcessState with the seccomp fd to the agent.

    One connection, one sendmsg carrying the JSON and the fd (SCM_RIGHTS), then close, as the
    spec requires. `state_json` is the container's state (runtime-spec State object); `pid`
    defaults to its pid. Call from the runtime (host mount namespace), not the container, since
    listenerPath is a host path. Failure raises RuntimeFailure.
    """
    import json
    import socket

    state = json.loads(state_json)
    msg: dict[str, Any] = {
        "ociVersion": state.get("ociVersion", "1.3.0"),
        "fds": ["seccompFd"],
        "pid": state.get("pid", 0) if pid is None else pid,
    }
    if metadata:
        msg["metadata"] = metadata
    msg["state"] = state
    payload = json.dumps(msg, separators=(",", ":")).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.connect(listener_path)
            sent = socket.send_fds(s, [payload], [fd])
            if sent < len(payload):  # the spec allows more sendmsg calls, without fds
                s.sendall(payload[sent:])
    except OSError as e:
        raise RuntimeFailure(
            f"cannot send seccomp fd to {listener_path}: {e.strerror or e}") from None


# --- helpers ----------------------------------------------------------------------------------

def _check_action(action: Any, where: str) -> None:
    if not isinstance(action, str):
        raise ConfigError(where, f"must be a string, not {json_type(action)}")
    if action not in ACTIONS:
        raise ConfigError(where, f'unknown action "{action}"')


def _check_errno(obj: dict, key: str, action: str, where: str) -> None:
    val = obj.get(key)
    if val is None:
        return
    if not _is_uint(val, _MAX_ERRNO_RET):
        raise ConfigError(f"{where}.{key}", f"must be an integer from 0 to {_MAX_ERRNO_RET}")
    if action not in ERRNO_ACTIONS:
        raise ConfigError(f"{where}.{key}", f"cannot be used with {action}")


def _check_arg(arg: Any, where: str) -> None:
    if not isinstance(arg, dict):
        raise ConfigError(where, f"must be an object, not {json_type(arg)}")
    for key, top, required in (("index", 5, True), ("value", _U64, True),
                               ("valueTwo", _U64, False)):
        val = arg.get(key)
        if val is None:
            if required:
                raise ConfigError(f"{where}.{key}", "is required")
            continue
        if not _is_uint(val, top):
            raise ConfigError(f"{where}.{key}", f"must be an integer from 0 to {top}")
    op = arg.get("op")
    if op is None:
        raise ConfigError(f"{where}.op", "is required")
    if not isinstance(op, str):
        raise ConfigError(f"{where}.op", f"must be a string, not {json_type(op)}")
    if op not in OPS:
        raise ConfigError(f"{where}.op", f'unknown operator "{op}"')


def _action(scmp: Any, name: str, errno_ret: int | None) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return scmp.KILL
    if name == "SCMP_ACT_ERRNO":
        return scmp.ERRNO(EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return scmp.TRACE(EPERM if errno_ret is None else errno_ret)
    return {"SCMP_ACT_KILL_PROCESS": scmp.KILL_PROCESS, "SCMP_ACT_TRAP": scmp.TRAP,
            "SCMP_ACT_ALLOW": scmp.ALLOW, "SCMP_ACT_LOG": scmp.LOG,
            "SCMP_ACT_NOTIFY": scmp.NOTIFY}[name]


def _condition_groups(scmp: Any, args: Any) -> list[list[Any]]:
    """One rule with all conditions, or (runc) one rule per condition if an index repeats."""
    conds = []
    for a in args:
        op = getattr(scmp, a["op"][len("SCMP_CMP_"):])
        conds.append(scmp.Arg(a["index"], op, a["value"], a.get("valueTwo") or 0))
    indexes = [a["index"] for a in args]
    if len(set(indexes)) < len(indexes):
        return [[c] for c in conds]
    return [conds]


def _is_uint(val: Any, top: int) -> bool:
    return isinstance(val, int) and not isinstance(val, bool) and 0 <= val <= top


def _errno(e: BaseException) -> int:
    """libseccomp binding errors read "Library error (errno = -22)"."""
    text = str(e)
    i = text.rfind("errno = ")
    if i < 0:
        return 0
    try:
        return int(text[i + 8:].rstrip(")"))
    except ValueError:
        return 0


def _why(e: BaseException) -> str:
    err = abs(_errno(e))
    return os.strerror(err) if err else str(e)
