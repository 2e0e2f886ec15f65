"""config.json parsed into records (runtime/records.py), with errors that name the JSON path.

The checks here are the ones the runtime needs to act safely and to fail before it creates
anything; the full JSON Schema (schemas/) is used by `runp check`, off the hot path.
Subtrees interpreted elsewhere (linux.resources, linux.seccomp) are kept as plain dicts and
validated by their own modules.
"""
from __future__ import annotations

import os
from .records import field, record
TYPE_CHECKING = False  # typing costs milliseconds to import
if TYPE_CHECKING:
    from typing import Any

from . import jsonlite
from .errors import ConfigError, json_type

SPEC_VERSION = "1.3.0"  # the OCI runtime-spec version runp implements
SUPPORTED_MAJOR = 1

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

# the names config.md allows; their numbers vary by architecture (linux/arch.py RLIMITS)
RLIMIT_NAMES = frozenset({
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
    "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
})

# --- small typed accessors: each raises ConfigError naming the path -----------------------------

_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", list: "an array",
               dict: "an object", float: "a number"}


def _get(obj: dict, key: str, typ: type, path: str, required: bool = False, default: Any = None):
    if key not in obj or obj[key] is None:
        if required:
            raise ConfigError(_join(path, key), "is required")
        return default
    val = obj[key]
    _expect(val, typ, _join(path, key))
    return val


def _expect(val: Any, typ: type, path: str) -> None:
    ok = isinstance(val, typ)
    if typ is int and isinstance(val, bool):
        ok = False
    if typ is float and isinstance(val, (int, float)) and not isinstance(val, bool):
        ok = True
    if not ok:
        raise ConfigError(path, f"must be {_TYPE_NAMES.get(typ, typ.__name__)}, not {json_type(val)}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _str_list(obj: dict, key: str, path: str) -> list[str]:
    vals = _get(obj, key, list, path, default=[])
    for i, v in enumerate(vals):
        _expect(v, str, f"{_join(path, key)}[{i}]")
    return vals


def _uint(obj: dict, key: str, path: str, required: bool = False, default: int | None = None,
          bits: int = 32) -> int | None:
    v = _get(obj, key, int, path, required=required, default=default)
    if v is not None and not (0 <= v < (1 << bits)):
        raise ConfigError(_join(path, key), f"must be between 0 and {(1 << bits) - 1}")
    return v


def _clean_abs(path: str) -> str:
    """An absolute path cleaned lexically, as runc's securejoin cleans it: "/dev/foo/",
    "/dev//foo" and "/dev/x/../foo" are all "/dev/foo" (normpath keeps a leading "//")."""
    return "/" + os.path.normpath(path).lstrip("/")


# --- the parsed spec ----------------------------------------------------------------------------

@record
class User:
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: list[int] = field(default_factory=list)
    username: str = ""


@record
class Rlimit:
    type: str
    soft: int
    hard: int


@record
class Process:
    args: list[str]
    cwd: str
    env: list[str] = field(default_factory=list)
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (height, width)
    user: User = field(default_factory=User)
    rlimits: list[Rlimit] = field(default_factory=list)
    capabilities: dict | None = None
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    apparmor_profile: str = ""
    selinux_label: str = ""
    scheduler: dict | None = None
    io_priority: dict | None = None
    exec_cpu_affinity: CPUAffinity | None = None
    raw: dict = field(default_factory=dict)


@record
class CPUAffinity:
    """process.execCPUAffinity: CPU lists (None: not given) for `runp exec`'s process."""
    initial: list[int] | None = None
    final: list[int] | None = None


@record
class MemoryPolicy:
    """linux.memoryPolicy: set_mempolicy(2)'s mode, node list and mode flags, by name."""
    mode: str
    nodes: list[int] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


@record
class IntelRdt:
    """linux.intelRdt: the resctrl group (CLOS) and what goes into its schemata file."""
    clos_id: str = ""
    l3_cache_schema: str = ""
    mem_bw_schema: str = ""
    schemata: list[str] = field(default_factory=list)
    enable_monitoring: bool = False


@record
class Mount:
    destination: str
    type: str = ""
    source: str = ""
    options: list[str] = field(default_factory=list)
    uid_mappings: list[IDMap] = field(default_factory=list)  # of an idmapped mount
    gid_mappings: list[IDMap] = field(default_factory=list)
    index: int = 0  # position in config.json "mounts", for error messages

    def idmapped(self) -> bool:
        """An idmapped mount is asked for (linux/idmapped.py makes it)."""
        return bool(self.uid_mappings or self.gid_mappings) or (
            "idmap" in self.options or "ridmap" in self.options)


@record
class Namespace:
    type: str
    path: str = ""


@record
class IDMap:
    container_id: int
    host_id: int
    size: int


@record
class Device:
    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@record
class Hook:
    path: str
    args: list[str] = field(default_factory=list)
    env: list[str] | None = None  # None (absent): the hook inherits its runner's environment
    timeout: int | None = None


@record
class Linux:
    namespaces: list[Namespace] = field(default_factory=list)
    uid_mappings: list[IDMap] = field(default_factory=list)
    gid_mappings: list[IDMap] = field(default_factory=list)
    time_offsets: dict[str, tuple[int, int]] = field(default_factory=dict)
    devices: list[Device] = field(default_factory=list)
    cgroups_path: str | None = None
    resources: dict | None = None
    rootfs_propagation: str = ""
    seccomp: dict | None = None
    sysctl: dict[str, str] = field(default_factory=dict)
    masked_paths: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    mount_label: str = ""
    personality: dict | None = None
    intel_rdt: IntelRdt | None = None
    memory_policy: MemoryPolicy | None = None
    net_devices: dict[str, str] = field(default_factory=dict)  # host name -> name inside

    def namespace(self, ns_type: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None


@record
class Spec:
    oci_version: str
    root_path: str  # absolute
    root_readonly: bool
    process: Process | None
    hostname: str | None
    domainname: str | None
    mounts: list[Mount]
    hooks: dict[str, list[Hook]]
    annotations: dict[str, str]
    linux: Linux
    bundle: str
    raw: dict


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def load(bundle: str) -> Spec:
    """Read and parse <bundle>/config.json."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError("", "no such file or directory", file=path) from None
    except OSError as e:
        raise ConfigError("", e.strerror or str(e), file=path) from None
    try:
        raw = jsonlite.loads(data)
    except ValueError as e:
        raise ConfigError("", f"invalid JSON: {e}") from None
    return parse(raw, bundle)


def parse(raw: Any, bundle: str) -> Spec:
    if not isinstance(raw, dict):
        raise ConfigError("", f"must be a JSON object, not {json_type(raw)}")
    version = _get(raw, "ociVersion", str, "", required=True)
    _check_version(version)
    root = _get(raw, "root", dict, "", required=True)
    root_path = _get(root, "path", str, "root", required=True)
    if not root_path:
        raise ConfigError("root.path", "must not be empty")
    abs_root = root_path if os.path.isabs(root_path) else os.path.join(bundle, root_path)
    abs_root = os.path.normpath(abs_root)
    if not os.path.isdir(abs_root):
        raise ConfigError("root.path", f"{abs_root}: no such directory")
    _check_rootfs_real(root_path, abs_root, bundle)
    proc = raw.get("process")
    process = _parse_process(proc, "process") if proc is not None else None
    hostname = _get(raw, "hostname", str, "")
    domainname = _get(raw, "domainname", str, "")
    mounts = [_parse_mount(m, f"mounts[{i}]", i)
              for i, m in enumerate(_get(raw, "mounts", list, "", default=[]))]
    hooks = _parse_hooks(_get(raw, "hooks", dict, "", default={}))
    annotations = _get(raw, "annotations", dict, "", default={})
    for k, v in annotations.items():
        _expect(v, str, f"annotations.{k}")
    linux = _parse_linux(_get(raw, "linux", dict, "", default={}))
    _warn_other_platforms(raw)
    if (hostname or domainname) and not linux.namespace("uts"):
        which = "hostname" if hostname else "domainname"
        raise ConfigError(which, "setting it requires a new uts namespace")
    return Spec(version, abs_root, bool(_get(root, "readonly", bool, "root", default=False)),
                process, hostname, domainname, mounts, hooks, annotations, linux,
                os.path.abspath(bundle), raw)


def _check_rootfs_real(root_path: str, abs_root: str, bundle: str) -> None:
    """runc 1.1.5 refuses a root.path that is a symlink or has one on its way (its validator:
    the path, made absolute from the bundle directory it has changed into, must be its own
    EvalSymlinks): the rootfs it mounts must be the directory the config names. A symlinked
    bundle directory is fine for a relative root.path, as runc resolves the bundle first."""
    where = abs_root if os.path.isabs(root_path) else \
        os.path.normpath(os.path.join(os.path.realpath(bundle), root_path))
    if os.path.realpath(where) != where:
        raise ConfigError("root.path", f"{root_path}: invalid rootfs: not an absolute path, or "
                          f"a symlink (it resolves to {os.path.realpath(where)})")


# config.md's sections for other platforms: a Linux runtime has nothing to apply them to
OTHER_PLATFORMS = ("windows", "solaris", "vm", "zos", "freebsd")
# process fields config.md defines for Windows only
WINDOWS_PROCESS_FIELDS = (("commandLine",), ("user", "username"))


def _warn_other_platforms(raw: dict) -> None:
    """No field is ignored silently (issue #15): another platform's section is a warning."""
    for key in OTHER_PLATFORMS:
        if raw.get(key) is not None:
            from .log import log
            log.warning(f"config.json: {key}: ignored: not a Linux section")


def _warn_windows_only(proc: dict, path: str) -> None:
    for keys in WINDOWS_PROCESS_FIELDS:
        v: Any = proc
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if v:
            from .log import log
            log.warning(f"config.json: {path}.{'.'.join(keys)}: ignored: Windows only")


def _check_version(version: str) -> None:
    parts = version.split(".")
    if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise ConfigError("ociVersion", f'"{version}" is not a valid SemVer version')
    if int(parts[0]) != SUPPORTED_MAJOR:
        raise ConfigError("ociVersion", f'unsupported version "{version}" (runp supports {SPEC_VERSION})')


def _parse_process(proc: Any, path: str) -> Process:
    _expect(proc, dict, path)
    args = _str_list(proc, "args", path)
    if not args:
        raise ConfigError(f"{path}.args", "must contain at least one element")
    cwd = _get(proc, "cwd", str, path, required=True)
    if not os.path.isabs(cwd):
        raise ConfigError(f"{path}.cwd", f'"{cwd}" is not an absolute path')
    env = _str_list(proc, "env", path)
    for i, e in enumerate(env):
        if "=" not in e:
            raise ConfigError(f"{path}.env[{i}]", f'"{e}" is not of the form NAME=value')
    terminal = _get(proc, "terminal", bool, path, default=False)
    size = None
    cs = _get(proc, "consoleSize", dict, path)
    if cs is not None:
        size = (_uint(cs, "height", f"{path}.consoleSize", required=True),
                _uint(cs, "width", f"{path}.consoleSize", required=True))
    u = _get(proc, "user", dict, path, default={})
    upath = f"{path}.user"
    user = User(uid=_uint(u, "uid", upath, default=0), gid=_uint(u, "gid", upath, default=0),
                umask=_uint(u, "umask", upath), username=_get(u, "username", str, upath, default=""))
    ag = _get(u, "additionalGids", list, upath, default=[])
    for i, g in enumerate(ag):
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < 1 << 32:
            raise ConfigError(f"{upath}.additionalGids[{i}]", "must be an unsigned 32-bit integer")
    user.additional_gids = ag
    rlimits = []
    seen: set[str] = set()
    for i, r in enumerate(_get(proc, "rlimits", list, path, default=[])):
        rp = f"{path}.rlimits[{i}]"
        _expect(r, dict, rp)
        typ = _get(r, "type", str, rp, required=True)
        if typ not in RLIMIT_NAMES:
            raise ConfigError(f"{rp}.type", f'unknown rlimit "{typ}"')
        if typ in seen:
            raise ConfigError(f"{rp}.type", f'duplicate rlimit "{typ}"')
        seen.add(typ)
        soft = _uint(r, "soft", rp, required=True, bits=64)
        hard = _uint(r, "hard", rp, required=True, bits=64)
        if soft > hard:
            raise ConfigError(rp, f"soft limit {soft} is greater than hard limit {hard}")
        rlimits.append(Rlimit(typ, soft, hard))
    caps = _get(proc, "capabilities", dict, path)
    _warn_windows_only(proc, path)
    oom = _get(proc, "oomScoreAdj", int, path)
    if oom is not None and not -1000 <= oom <= 1000:
        raise ConfigError(f"{path}.oomScoreAdj", "must be between -1000 and 1000")
    return Process(
        args=args, cwd=cwd, env=env, terminal=terminal, console_size=size, user=user,
        rlimits=rlimits, capabilities=caps,
        no_new_privileges=_get(proc, "noNewPrivileges", bool, path, default=False),
        oom_score_adj=oom,
        apparmor_profile=_get(proc, "apparmorProfile", str, path, default=""),
        selinux_label=_get(proc, "selinuxLabel", str, path, default=""),
        scheduler=_get(proc, "scheduler", dict, path),
        io_priority=_get(proc, "ioPriority", dict, path),
        exec_cpu_affinity=_parse_cpu_affinity(_get(proc, "execCPUAffinity", dict, path),
                                              f"{path}.execCPUAffinity"),
        raw=proc,
    )


def _parse_mount(m: Any, path: str, index: int) -> Mount:
    _expect(m, dict, path)
    dest = _get(m, "destination", str, path, required=True)
    if not dest:
        raise ConfigError(f"{path}.destination", "must not be empty")
    # runc accepts relative destinations (treated as relative to /); so do we.
    if not dest.startswith("/"):
        dest = "/" + dest
    return Mount(
        destination=dest,
        type=_get(m, "type", str, path, default=""),
        source=_get(m, "source", str, path, default=""),
        options=_str_list(m, "options", path),
        uid_mappings=_parse_idmaps(_get(m, "uidMappings", list, path, default=[]),
                                   f"{path}.uidMappings"),
        gid_mappings=_parse_idmaps(_get(m, "gidMappings", list, path, default=[]),
                                   f"{path}.gidMappings"),
        index=index,
    )


def _parse_hooks(hooks: dict) -> dict[str, list[Hook]]:
    out: dict[str, list[Hook]] = {}
    for kind, items in hooks.items():
        if kind not in HOOK_KINDS:
            continue  # unknown hook kinds are ignored (forward compatibility)
        _expect(items, list, f"hooks.{kind}")
        lst = []
        for i, h in enumerate(items):
            hp = f"hooks.{kind}[{i}]"
            _expect(h, dict, hp)
            p = _get(h, "path", str, hp, required=True)
            if not os.path.isabs(p):
                raise ConfigError(f"{hp}.path", f'"{p}" is not an absolute path')
            timeout = _get(h, "timeout", int, hp)
            if timeout is not None and timeout <= 0:
                raise ConfigError(f"{hp}.timeout", "must be greater than zero")
            env = _str_list(h, "env", hp) if h.get("env") is not None else None
            lst.append(Hook(p, _str_list(h, "args", hp), env, timeout))
        out[kind] = lst
    return out


def _parse_idmaps(lst: list, path: str) -> list[IDMap]:
    out = []
    for i, m in enumerate(lst):
        mp = f"{path}[{i}]"
        _expect(m, dict, mp)
        out.append(IDMap(_uint(m, "containerID", mp, required=True),
                         _uint(m, "hostID", mp, required=True),
                         _uint(m, "size", mp, required=True)))
    return out


def _parse_linux(lx: dict) -> Linux:
    p = "linux"
    linux = Linux()
    seen: set[str] = set()
    for i, ns in enumerate(_get(lx, "namespaces", list, p, default=[])):
        np = f"{p}.namespaces[{i}]"
        _expect(ns, dict, np)
        typ = _get(ns, "type", str, np, required=True)
        if typ not in NAMESPACE_TYPES:
            raise ConfigError(f"{np}.type", f'unknown namespace type "{typ}"')
        if typ in seen:
            raise ConfigError(f"{np}.type", f'duplicate namespace "{typ}"')
        seen.add(typ)
        nspath = _get(ns, "path", str, np, default="")
        if nspath and not os.path.isabs(nspath):
            raise ConfigError(f"{np}.path", f'"{nspath}" is not an absolute path')
        linux.namespaces.append(Namespace(typ, nspath))
    linux.uid_mappings = _parse_idmaps(_get(lx, "uidMappings", list, p, default=[]), f"{p}.uidMappings")
    linux.gid_mappings = _parse_idmaps(_get(lx, "gidMappings", list, p, default=[]), f"{p}.gidMappings")
    userns = linux.namespace("user")
    if (linux.uid_mappings or linux.gid_mappings) and not userns:
        raise ConfigError(f"{p}.uidMappings", "id mappings require a user namespace")
    if userns and not userns.path and not (linux.uid_mappings and linux.gid_mappings):
        raise ConfigError(f"{p}.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    if userns and not userns.path and not linux.namespace("mount"):
        # the init would mount the rootfs in the host's mount namespace, which a new user
        # namespace owns nothing of: EPERM, naming no field (found by the fuzzer); runc refuses
        # the config too ("unable to restrict sys entries without a private MNT namespace")
        raise ConfigError(f"{p}.namespaces", "a new user namespace needs a mount namespace: "
                          "the rootfs cannot be mounted in the host's")
    tof = _get(lx, "timeOffsets", dict, p, default={})
    for clock, off in tof.items():
        tp = f"{p}.timeOffsets.{clock}"
        if clock not in ("monotonic", "boottime"):
            raise ConfigError(tp, f'unknown clock "{clock}"')
        _expect(off, dict, tp)
        linux.time_offsets[clock] = (_get(off, "secs", int, tp, default=0),
                                     _uint(off, "nanosecs", tp, default=0))
    tns = linux.namespace("time")
    if linux.time_offsets and (not tns or tns.path):
        raise ConfigError(f"{p}.timeOffsets", "time offsets require a new time namespace")
    for i, d in enumerate(_get(lx, "devices", list, p, default=[])):
        dp = f"{p}.devices[{i}]"
        _expect(d, dict, dp)
        dpath = _get(d, "path", str, dp, required=True)
        if not os.path.isabs(dpath):
            raise ConfigError(f"{dp}.path", f'"{dpath}" is not an absolute path')
        dpath = _clean_abs(dpath)
        typ = _get(d, "type", str, dp, required=True)
        if typ not in ("c", "b", "u", "p"):
            raise ConfigError(f"{dp}.type", f'unknown device type "{typ}"')
        major = _get(d, "major", int, dp, required=typ != "p", default=0)
        minor = _get(d, "minor", int, dp, required=typ != "p", default=0)
        linux.devices.append(Device(dpath, typ, major, minor, _uint(d, "fileMode", dp),
                                    _uint(d, "uid", dp), _uint(d, "gid", dp)))
    linux.cgroups_path = _get(lx, "cgroupsPath", str, p)
    linux.resources = _get(lx, "resources", dict, p)
    prop = _get(lx, "rootfsPropagation", str, p, default="")
    if prop not in ("", "shared", "slave", "private", "unbindable", "rshared", "rslave",
                    "rprivate", "runbindable"):
        raise ConfigError(f"{p}.rootfsPropagation", f'unknown propagation "{prop}"')
    linux.rootfs_propagation = prop
    linux.seccomp = _get(lx, "seccomp", dict, p)
    sysctl = _get(lx, "sysctl", dict, p, default={})
    for k, v in sysctl.items():
        _expect(v, str, f"{p}.sysctl.{k}")
        if "/" in k.replace(".", "") or ".." in k:
            raise ConfigError(f"{p}.sysctl.{k}", "invalid sysctl name")
    linux.sysctl = sysctl
    linux.masked_paths = _str_list(lx, "maskedPaths", p)
    linux.readonly_paths = _str_list(lx, "readonlyPaths", p)
    for key, lst in (("maskedPaths", linux.masked_paths), ("readonlyPaths", linux.readonly_paths)):
        for i, mp in enumerate(lst):
            if not os.path.isabs(mp):
                raise ConfigError(f"{p}.{key}[{i}]", f'"{mp}" is not an absolute path')
    linux.mount_label = _get(lx, "mountLabel", str, p, default="")
    linux.personality = _get(lx, "personality", dict, p)
    rdt = _get(lx, "intelRdt", dict, p)
    linux.intel_rdt = _parse_intel_rdt(rdt, f"{p}.intelRdt") if rdt is not None else None
    mpol = _get(lx, "memoryPolicy", dict, p)
    linux.memory_policy = _parse_memory_policy(mpol, f"{p}.memoryPolicy") if mpol is not None else None
    linux.net_devices = _parse_net_devices(_get(lx, "netDevices", dict, p, default={}),
                                           f"{p}.netDevices", linux)
    return linux


def parse_id_list(text: str, path: str, what: str = "CPU") -> list[int]:
    """A kernel list string ("0-3,7", as in cpuset.cpus) -> sorted ids; "" is empty."""
    if not text.strip():
        return []
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or sep and not hi.isdigit():
            raise ConfigError(path, f'invalid {what} list "{text}" (expected e.g. "0-3,7")')
        a, b = int(lo), int(hi) if sep else int(lo)
        if a > b or b >= 1 << 16:
            raise ConfigError(path, f'invalid {what} range "{part}" in "{text}"')
        out.update(range(a, b + 1))
    return sorted(out)


def _parse_cpu_affinity(aff: dict | None, path: str) -> CPUAffinity | None:
    if aff is None:
        return None
    res = CPUAffinity()
    for key in ("initial", "final"):
        text = _get(aff, key, str, path, default="")
        if text:  # an empty "final" means: leave it to the kernel (config.md)
            ids = parse_id_list(text, f"{path}.{key}")
            setattr(res, key, ids)
    return res


MEMORY_POLICY_MODES = ("MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND", "MPOL_INTERLEAVE",
                       "MPOL_LOCAL", "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE")
MEMORY_POLICY_FLAGS = ("MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES")


def _parse_memory_policy(mp: dict, path: str) -> MemoryPolicy:
    """The rules set_mempolicy(2) states, checked before anything is made (as runc's
    validator): which modes take nodes, and the two exclusive node-numbering flags."""
    mode = _get(mp, "mode", str, path, required=True)
    if mode not in MEMORY_POLICY_MODES:
        raise ConfigError(f"{path}.mode", f'unknown mode "{mode}"')
    nodes = parse_id_list(_get(mp, "nodes", str, path, default=""), f"{path}.nodes", "node")
    flags = _str_list(mp, "flags", path)
    for i, f in enumerate(flags):
        if f not in MEMORY_POLICY_FLAGS:
            raise ConfigError(f"{path}.flags[{i}]", f'unknown flag "{f}"')
    if mode in ("MPOL_DEFAULT", "MPOL_LOCAL") and nodes:
        raise ConfigError(f"{path}.nodes", f"{mode} takes no nodes")
    if mode in ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED_MANY",
                "MPOL_WEIGHTED_INTERLEAVE") and not nodes:
        raise ConfigError(f"{path}.nodes", f"{mode} needs at least one node")
    if "MPOL_F_STATIC_NODES" in flags and "MPOL_F_RELATIVE_NODES" in flags:
        raise ConfigError(f"{path}.flags", "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES "
                          "exclude each other")
    return MemoryPolicy(mode, nodes, flags)


def _parse_intel_rdt(rdt: dict, path: str) -> IntelRdt:
    clos = _get(rdt, "closID", str, path, default="")
    # one directory below the resctrl root ("/" is the root itself): never a path that
    # could leave it
    if clos != "/" and ("/" in clos or clos in (".", "..") or "\n" in clos):
        raise ConfigError(f"{path}.closID", f'"{clos}" is not a resctrl group name')
    l3 = _get(rdt, "l3CacheSchema", str, path, default="")
    mb = _get(rdt, "memBwSchema", str, path, default="")
    if mb and not mb.startswith("MB:"):
        raise ConfigError(f"{path}.memBwSchema", 'must start with "MB:"')
    schemata = _str_list(rdt, "schemata", path)
    for where, val in ([("l3CacheSchema", l3), ("memBwSchema", mb)]
                       + [(f"schemata[{i}]", v) for i, v in enumerate(schemata)]):
        if "\n" in val:
            raise ConfigError(f"{path}.{where}", "must not contain newlines")
    return IntelRdt(clos, l3, mb, schemata, _get(rdt, "enableMonitoring", bool, path, default=False))


def valid_netdev_name(name: str, template: bool = False) -> bool:
    """The kernel's dev_valid_name(): 1-15 bytes, not "." or "..", no "/", ":" or white
    space; `template`: a "%d" the kernel replaces by a free number (config-linux.md)."""
    b = name.encode()
    if not b or len(b) >= 16 or name in (".", ".."):
        return False
    if any(c in "/:" or c.isspace() for c in name):
        return False
    return template or "%" not in name


def _parse_net_devices(devs: dict, path: str, linux: Linux) -> dict[str, str]:
    out: dict[str, str] = {}
    for host, d in devs.items():
        dp = f"{path}.{host}"
        _expect(d, dict, dp)
        if not valid_netdev_name(host):
            raise ConfigError(dp, f'"{host}" is not a valid network device name')
        name = _get(d, "name", str, dp, default="") or host
        if not valid_netdev_name(name, template=True) or name.count("%") > 1 or (
                "%" in name and "%d" not in name):
            raise ConfigError(f"{dp}.name", f'"{name}" is not a valid network device name')
        out[host] = name
    if out and linux.namespace("network") is None:
        raise ConfigError(path, "moving network devices requires a network namespace "
                          "(the container shares the runtime's)")
    fixed = [n for n in out.values() if "%" not in n]  # (templates get free numbers)
    if len(set(fixed)) < len(fixed):
        raise ConfigError(path, "two devices would get the same name in the container")
    return out


# --- `runp spec` -----------------------------------------------------------------------------------

def default_spec(rootless: bool = False) -> dict:
    """The config `runp spec` writes: runc's template (specconv.Example, and ToRootless for
    --rootless), for runtime-spec 1.3. It differs from runc's only in ociVersion (the spec
    version runp implements) and hostname (each runtime writes its own name, as crun does).
    As with runc, a cgroup namespace only on a pure cgroup v2 host: on v1 and hybrid hosts a
    caller adding its own would get a "duplicate namespace" error."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    namespaces = ["pid", "network", "ipc", "uts", "mount"]
    # pure cgroup v2: what runtime.linux.cgroups.detect() calls "v2" (that package is not
    # imported here: `runp spec` and the tests load this module)
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        namespaces.append("cgroup")
    devpts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts.append("gid=5")
    spec: dict = {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runp",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": devpts},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in namespaces],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    if rootless:
        lx = spec["linux"]
        del lx["resources"]
        lx["namespaces"] = [{"type": t} for t in namespaces if t != "network"] + [{"type": "user"}]
        spec["linux"] = {  # first in "linux", as in runc's (the order of its Go struct)
            "uidMappings": [{"containerID": 0, "hostID": os.geteuid(), "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": os.getegid(), "size": 1}], **lx}
        spec["mounts"][5] = {"destination": "/sys", "type": "none", "source": "/sys",
                             "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    return spec
