"""The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient scope
unit that systemd makes, as runc's driver does.

cgroupsPath "slice:prefix:name" names the scope "<prefix>-<name>.scope" in the slice (default
system.slice, or user.slice for the user's own systemd instance). `create` asks systemd over
D-Bus (StartTransientUnit) for the scope, with the container init in it, Delegate=yes,
accounting on, the org.systemd.property.* annotations and the resources systemd has properties
for; once the job is done the fs driver's code writes every resource into the scope's cgroup
too (what systemd has no property for, and the exact values where systemd rounds). `update` sets
the properties (SetUnitProperties) and the files; `delete` stops the unit (StopUnit). Everything
else (pause, ps, events, exec) works on the scope's directories as with cgroupfs.

The pure parts (naming, property translation) need no D-Bus; the client (dbus.py) is imported
only when systemd is really asked.
"""
from __future__ import annotations

import os

from ...errors import ConfigError, RuntimeFailure
from ...log import log

FIELD = "linux.cgroupsPath"
SYSTEMD = "org.freedesktop.systemd1"
OBJECT = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
NOT_RUNNING = "systemd not running on this host, cannot use systemd cgroups manager"
ANNOTATION_PREFIX = "org.systemd.property."
INFINITY = 2**64 - 1            # systemd's "infinity" for limits (USEC_INFINITY, CGROUP_LIMIT_MAX)
DEFAULT_PERIOD = 100000         # the kernel's CPU quota period, microseconds
JOB_TIMEOUT = 30.0              # as runc: seconds systemd has to start or stop the unit


# --- naming ---------------------------------------------------------------------------------------

def expand_slice(slice_name: str) -> str:
    """"a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" -> "/" (as systemd does)."""
    suffix = ".slice"
    if len(slice_name) <= len(suffix) - 1 or not slice_name.endswith(suffix) or "/" in slice_name:
        raise ConfigError(FIELD, f"invalid slice name {slice_name!r}")
    base = slice_name[:-len(suffix)]
    if base == "-":
        return "/"
    path, prefix = "", ""
    for comp in base.split("-"):
        if not comp:
            raise ConfigError(FIELD, f"invalid slice name {slice_name!r}")
        path += "/" + prefix + comp + suffix
        prefix += comp + "-"
    return path


def use_user_instance() -> bool:
    """The user's own systemd (systemdUser) serves a caller that is not real root: a non-root
    uid, or root inside a user namespace (rootless podman runs the runtime there)."""
    if os.geteuid() != 0:
        return True
    from .dbus import _in_user_namespace
    return _in_user_namespace()


def parse(cgroups_path: str | None, container_id: str, user: bool = False) -> dict:
    """The systemd unit for a cgroupsPath: {"slice", "prefix", "name", "unit", "path", "user"}
    ("path": the cgroup, relative to the instance's own cgroup for the user instance).

    No cgroupsPath means runc's default: "<slice>:runc:<id>"."""
    if not cgroups_path:
        slice_name, prefix, name = "", "runc", container_id
    else:
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise ConfigError(FIELD, f"expected \"slice:prefix:name\" for systemd cgroups, "
                                     f"got {cgroups_path!r}")
        slice_name, prefix, name = parts
    if not name:
        raise ConfigError(FIELD, f"the unit name in {cgroups_path!r} is empty")
    if "/" in name or "/" in prefix:
        raise ConfigError(FIELD, f"invalid unit name in {cgroups_path!r}")
    slice_name = slice_name or ("user.slice" if user else "system.slice")
    unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope"
    path = expand_slice(slice_name).rstrip("/") + "/" + unit
    return {"slice": slice_name, "prefix": prefix, "name": name, "unit": unit, "path": path,
            "user": user}


def running() -> bool:
    """Booted with systemd (sd_booted(3): /run/systemd/system is a directory)."""
    return os.path.isdir("/run/systemd/system") and not os.path.islink("/run/systemd/system")


def user_instance_sockets() -> list[tuple[str, bool]]:
    """Where the caller's own systemd may be reached: (socket, needs Hello) pairs, its private
    socket first (no bus daemon in between), then the session bus."""
    out: list[tuple[str, bool]] = []
    xdg = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    out.append((f"{xdg}/systemd/private", False))
    addr = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if addr:
        from .dbus import DBusError, socket_path
        try:
            out.append((socket_path(addr), True))
        except DBusError:
            pass
    out.append((f"{xdg}/bus", True))
    return out


def user_instance_reachable() -> bool:
    return any(os.path.exists(p) for p, _ in user_instance_sockets())


# --- properties ------------------------------------------------------------------------------------

def _prop(name: str, sig: str, value) -> tuple[str, tuple[str, object]]:
    return (name, (sig, value))


def check_property_name(name: str) -> str | None:
    """runc's rule: latin letters only, at least three."""
    if len(name) < 3:
        return "too short"
    if not all("a" <= c <= "z" or "A" <= c <= "Z" for c in name):
        return "contains non-alphabetic character"
    return None


def annotation_properties(annotations: dict | None) -> list:
    """Every annotation org.systemd.property.<Name> with a value in GVariant text form, as runc
    takes them; <Name>Sec (lower-case letter before "Sec") becomes <Name>USec, in microseconds."""
    from .dbus import parse_text
    out = []
    for key, text in sorted((annotations or {}).items()):
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        field = f"annotations[{key!r}]"
        name = key[len(ANNOTATION_PREFIX):]
        why = check_property_name(name)
        if why:
            raise ConfigError(field, f"systemd property name {name!r}: {why}")
        if not isinstance(text, str):
            raise ConfigError(field, "must be a string")
        try:
            sig, value = parse_text(text)
        except ValueError as e:
            raise ConfigError(field, f"cannot parse {text!r} as a D-Bus value: {e}") from None
        if name.endswith("Sec") and len(name) > 3 and "a" <= name[-4] <= "z":
            if sig not in ("y", "n", "q", "i", "u", "x", "t", "d"):
                raise ConfigError(field, f"{name} needs a number of seconds, not {text!r}")
            name, sig, value = name[:-3] + "USec", "t", int(value * 1_000_000)
        out.append(_prop(name, sig, value))
    return out


def unit_properties(unit: dict, pid: int, v1: bool) -> list:
    """What runc sets on every container unit (minus the resources)."""
    props = [_prop("Description", "s", f"runp container {unit['name']}")]
    if unit["unit"].endswith(".slice"):
        props.append(_prop("Wants", "as", [unit["slice"]]))
    else:
        props += [_prop("Slice", "s", unit["slice"]), _prop("Delegate", "b", True)]
    props.append(_prop("PIDs", "au", [pid]))
    # accounting on: the same behaviour as the fs driver (every controller there)
    props += [_prop(n, "b", True) for n in ("MemoryAccounting", "CPUAccounting",
                                             "BlockIOAccounting" if v1 else "IOAccounting",
                                             "TasksAccounting")]
    props.append(_prop("DefaultDependencies", "b", False))
    return props


def range_to_bits(text: str) -> bytes:
    """A cpuset list ("0-2,5") as systemd's AllowedCPUs/AllowedMemoryNodes take it: a bitmask,
    CPU n in bit n%8 of byte n//8. Raises ValueError."""
    bits = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a < 0 or b < a:
            raise ValueError(f"invalid range {part!r}")
        bits |= ((1 << (b - a + 1)) - 1) << a
    if not bits:
        raise ValueError("empty cpu list")
    return bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def cpu_quota_properties(quota: int | None, period: int | None, version: int) -> list:
    """CPUQuotaPerSecUSec (and CPUQuotaPeriodUSec from systemd 242): systemd keeps the quota as a
    percentage, so a fraction of a percent is rounded up to the next 10 ms per second, as runc
    does (the fs driver then writes the exact cpu.max)."""
    props = []
    if period:
        if version >= 242:
            props.append(_prop("CPUQuotaPeriodUSec", "t", period))
        else:
            log.debug(f"systemd {version} has no CPUQuotaPeriodUSec (cgroupfs gets the period)")
    if quota or period:
        per_sec = INFINITY
        if quota and quota > 0:
            per_sec = quota * 1_000_000 // (period or DEFAULT_PERIOD)
            if per_sec % 10000:
                per_sec = (per_sec // 10000 + 1) * 10000
        props.append(_prop("CPUQuotaPerSecUSec", "t", per_sec))
    return props


def cpuset_properties(cpus: str | None, mems: str | None, version: int, field: str) -> list:
    if not cpus and not mems:
        return []
    if version < 244:
        log.debug(f"systemd {version} has no AllowedCPUs/AllowedMemoryNodes (cgroupfs gets them)")
        return []
    props = []
    for name, text, key in (("AllowedCPUs", cpus, "cpus"), ("AllowedMemoryNodes", mems, "mems")):
        if text:
            try:
                props.append(_prop(name, "ay", range_to_bits(text)))
            except ValueError as e:
                raise ConfigError(f"{field}.{key}", f"{text!r}: {e}") from None
    return props


def needs_version(r: dict) -> bool:
    """Whether translating these resources depends on systemd's version (one more call)."""
    cpu = r.get("cpu") if isinstance(r.get("cpu"), dict) else {}
    uni = r.get("unified") if isinstance(r.get("unified"), dict) else {}
    return bool(cpu.get("period") or cpu.get("cpus") or cpu.get("mems")
                or any(k in uni for k in ("cpu.max", "cpuset.cpus", "cpuset.mems")))


def _device_group(kind: str, major: int) -> str | None:
    """The /proc/devices name of a major number, as DeviceAllow wants "char-<name>"."""
    want = "Character devices:" if kind == "c" else "Block devices:"
    section = ""
    try:
        with open("/proc/devices") as f:
            for line in f:
                line = line.strip()
                if line.endswith(":"):
                    section = line
                    continue
                num, _, name = line.partition(" ")
                if section == want and num.isdigit() and int(num) == major:
                    return ("char-" if kind == "c" else "block-") + name.strip()
    except OSError:
        pass
    return None


def device_properties(rules: list) -> list:
    """DevicePolicy and DeviceAllow for the device rules (config + defaults), as runc makes
    them: a white-list in strict mode; systemd has no deny rules, so a black-list becomes
    "auto" if it allows everything, else a temporary deny-all (the fs driver's program then
    applies the real rules). Rules systemd cannot name ("*:n", unknown groups, missing device
    nodes) are left to that program too."""
    from .devices import WILDCARD, Emulator, access_string
    emu = Emulator.from_rules(rules)
    reset = _prop("DeviceAllow", "a(ss)", [])
    if emu.default_allow:
        if not emu.rules:
            return [_prop("DevicePolicy", "s", "auto"), reset]
        log.warning("systemd does not support black-list device rules: "
                    "applying a deny-all rule through systemd")
        return [_prop("DevicePolicy", "s", "strict"), reset]
    allow = []
    for (kind, major, minor), bits in emu._ordered():
        if major == WILDCARD:
            if minor != WILDCARD:
                log.debug(f"systemd cannot express the device rule {kind} *:{minor}: skipped")
                continue
            path = ("char-" if kind == "c" else "block-") + "*"
        elif minor == WILDCARD:
            group = _device_group(kind, major)
            if group is None:
                log.debug(f"no device group for {kind} {major}:* in /proc/devices: skipped")
                continue
            path = group
        else:
            path = f"/dev/{'char' if kind == 'c' else 'block'}/{major}:{minor}"
            if not os.path.exists(path) and not os.path.exists("/sys" + path):
                log.debug(f"skipping device {path} for systemd: it does not exist")
                continue
        allow.append((path, access_string(bits)))
    return [_prop("DevicePolicy", "s", "strict"), reset, _prop("DeviceAllow", "a(ss)", allow)]


def _limit(v: int) -> int:
    return INFINITY if v < 0 else v


def resource_properties(r: dict | None, v1: bool, version: int, devices: bool,
                        path: str = "linux.resources") -> list:
    """linux.resources as systemd unit properties (runc's genV1/genV2ResourcesProperties, plus
    IO weights). `devices`: include the device rules (always at create; on update only when
    given). Only the fields present are translated, so this serves `update` too."""
    from . import common
    from .v2 import blkio_weight_to_io_weight, cpu_shares_to_weight, memory_swap_to_v2
    r = r or {}
    if not isinstance(r, dict):
        raise ConfigError(path, "must be an object")
    pre = path + "." if path else ""
    props: list = []
    if devices:
        from .devices import rules_from_config, with_defaults
        rules = rules_from_config(common.get_list(r, "devices", path), pre + "devices")
        try:
            props += device_properties(with_defaults(rules))
        except ValueError as e:
            raise ConfigError(pre + "devices", str(e)) from None

    mem = common.get_obj(r, "memory", path) or {}
    f = pre + "memory"
    limit = common.get_int(mem, "limit", f)
    if limit:
        props.append(_prop("MemoryLimit" if v1 else "MemoryMax", "t", _limit(limit)))
    reservation = common.get_int(mem, "reservation", f)
    if reservation and not v1:
        props.append(_prop("MemoryLow", "t", _limit(reservation)))
    swap = common.get_int(mem, "swap", f)
    if swap is not None and not v1:
        try:
            v = memory_swap_to_v2(swap, limit or 0)
        except ValueError as e:
            raise ConfigError(f"{f}.swap", str(e)) from None
        if v:
            props.append(_prop("MemorySwapMax", "t", _limit(v)))

    cpu = common.get_obj(r, "cpu", path) or {}
    f = pre + "cpu"
    shares = common.get_int(cpu, "shares", f, lo=0)
    if shares:
        props.append(_prop("CPUShares", "t", shares) if v1 else
                     _prop("CPUWeight", "t", cpu_shares_to_weight(shares)))
    props += cpu_quota_properties(common.get_int(cpu, "quota", f),
                                  common.get_int(cpu, "period", f, lo=0), version)
    props += cpuset_properties(common.get_str(cpu, "cpus", f), common.get_str(cpu, "mems", f),
                               version, f)

    pids = common.get_obj(r, "pids", path) or {}
    plimit = common.get_int(pids, "limit", pre + "pids")
    if plimit is not None and (plimit > 0 or plimit == -1):
        props.append(_prop("TasksMax", "t", _limit(plimit)))

    blkio = common.get_obj(r, "blockIO", path) or {}
    f = pre + "blockIO"
    weight = common.get_int(blkio, "weight", f, lo=0, hi=65535)
    if weight:
        props.append(_prop("BlockIOWeight", "t", weight) if v1 else
                     _prop("IOWeight", "t", blkio_weight_to_io_weight(weight)))
    dev_weights = []
    for i, wd in enumerate(common.get_list(blkio, "weightDevice", f) or []):
        wf = f"{f}.weightDevice[{i}]"
        if not isinstance(wd, dict):
            raise ConfigError(wf, "must be an object")
        w = common.get_int(wd, "weight", wf, lo=0, hi=65535)
        maj, mnr = common.get_int(wd, "major", wf, lo=0), common.get_int(wd, "minor", wf, lo=0)
        if w and maj is not None and mnr is not None:
            dev_weights.append((f"/dev/block/{maj}:{mnr}",
                                w if v1 else blkio_weight_to_io_weight(w)))
    if dev_weights:
        props.append(_prop("BlockIODeviceWeight" if v1 else "IODeviceWeight", "a(st)",
                           dev_weights))

    unified = common.get_obj(r, "unified", path)
    if unified and not v1:
        props += unified_properties(unified, version, pre + "unified")
    return props


_UNIFIED_MEMORY = {"memory.high": "MemoryHigh", "memory.low": "MemoryLow",
                   "memory.min": "MemoryMin", "memory.max": "MemoryMax",
                   "memory.swap.max": "MemorySwapMax"}


def unified_properties(unified: dict, version: int, field: str) -> list:
    """The linux.resources.unified files systemd has properties for (runc's list); the others
    go to cgroupfs only."""
    props = []
    for key, raw in sorted(unified.items()):
        kf = f"{field}[{key!r}]"
        if not isinstance(raw, str):
            raise ConfigError(kf, "must be a string")
        v = raw.strip()
        try:
            if key in _UNIFIED_MEMORY or key == "pids.max":
                n = INFINITY if v == "max" else int(v)
                if n < 0:
                    raise ValueError
                props.append(_prop("TasksMax" if key == "pids.max" else _UNIFIED_MEMORY[key],
                                   "t", n))
            elif key == "cpu.weight":
                props.append(_prop("CPUWeight", "t", int(v)))
            elif key == "cpu.max":
                f = v.split()
                if not 1 <= len(f) <= 2:
                    raise ValueError
                quota = 0 if f[0] == "max" else int(f[0])
                props += cpu_quota_properties(quota, int(f[1]) if len(f) == 2 else DEFAULT_PERIOD,
                                              version)
            elif key in ("cpuset.cpus", "cpuset.mems"):
                cpus, mems = (v, None) if key == "cpuset.cpus" else (None, v)
                props += cpuset_properties(cpus, mems, version, kf)
        except ValueError:
            raise ConfigError(kf, f"invalid value {raw!r}") from None
    return props


# --- talking to systemd -----------------------------------------------------------------------------

class Systemd:
    """A connection to the system instance (root: systemd's private socket, no bus daemon
    needed, as runc's go-systemd does) or to the caller's user instance."""

    def __init__(self, user: bool) -> None:
        from .dbus import Connection, DBusError
        self.user = user
        self._version: int | None = None
        if user:
            candidates = user_instance_sockets()
        else:
            if not running():
                raise RuntimeFailure(NOT_RUNNING)
            candidates = [("/run/systemd/private", False),
                          ("/run/dbus/system_bus_socket", True)]
        errors = []
        for path, bus in candidates:
            if not os.path.exists(path):
                continue
            try:
                self.conn = Connection(path, hello=bus, timeout=JOB_TIMEOUT)
            except DBusError as e:
                errors.append(str(e))
                continue
            if bus:  # through a bus daemon, job signals come only to subscribers
                s1 = self.conn.send("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                    "org.freedesktop.DBus", "AddMatch", "s",
                                    [f"type='signal',sender='{SYSTEMD}',interface='{MANAGER}',"
                                     f"member='JobRemoved'"])
                s2 = self.conn.send(SYSTEMD, OBJECT, MANAGER, "Subscribe")
                try:
                    self.conn.reply(s1)
                    self.conn.reply(s2)
                except DBusError as e:
                    self.conn.close()
                    errors.append(str(e))
                    continue
            return
        which = "the user's systemd instance" if user else "systemd"
        raise RuntimeFailure(f"cannot connect to {which} over D-Bus: "
                             f"{'; '.join(errors) or 'no D-Bus socket found'}")

    def close(self) -> None:
        self.conn.close()

    def call(self, member: str, sig: str = "", args: list | None = None) -> list:
        return self.conn.call(SYSTEMD, OBJECT, MANAGER, member, sig, args)

    def version(self) -> int:
        """The manager's version (e.g. "252.39-1~deb12u2" -> 252)."""
        if self._version is None:
            text = str(self.manager_property("Version"))
            digits = ""
            for c in text.lstrip("v"):
                if not c.isdigit():
                    break
                digits += c
            self._version = int(digits) if digits else 0
        return self._version

    def manager_property(self, name: str):
        (value,) = self.conn.call(SYSTEMD, OBJECT, "org.freedesktop.DBus.Properties", "Get",
                                  "ss", [MANAGER, name])
        return value

    def _wait_job(self, job: str) -> str:
        msg = self.conn.wait_signal("JobRemoved", lambda body: len(body) == 4 and body[1] == job)
        return msg.body[3]

    def start(self, unit: str, props: list) -> None:
        """StartTransientUnit and wait for its job: "done", or an error after resetting the
        failed unit (so nothing stays loaded). A unit that exists already (say failed, from a
        container of the same name) is reset and tried once more."""
        from .dbus import DBusError
        for attempt in (1, 2):
            try:
                (job,) = self.call("StartTransientUnit", "ssa(sv)a(sa(sv))",
                                   [unit, "replace", props, []])
            except DBusError as e:
                if e.name == "org.freedesktop.systemd1.UnitExists" and attempt == 1:
                    self.reset_failed(unit)
                    continue
                raise RuntimeFailure(f"cannot start systemd unit {unit}: {e}") from None
            result = self._wait_job(job)
            if result != "done":
                self.reset_failed(unit)
                raise RuntimeFailure(f"error creating systemd unit `{unit}`: got `{result}`")
            return

    def stop(self, unit: str) -> None:
        """StopUnit and wait for it; a unit already gone is fine. A failed unit (e.g. its
        processes were OOM-killed) stays loaded until reset: reset it too."""
        from .dbus import DBusError
        try:
            (job,) = self.call("StopUnit", "ss", [unit, "replace"])
            result = self._wait_job(job)
            if result not in ("done", "canceled"):
                log.warning(f"error removing unit `{unit}`: got `{result}`. Continuing...")
        except DBusError as e:
            if e.name != "org.freedesktop.systemd1.NoSuchUnit":
                raise RuntimeFailure(f"cannot stop systemd unit {unit}: {e}") from None
        self.reset_failed(unit)

    def reset_failed(self, unit: str) -> None:
        from .dbus import DBusError
        try:
            self.call("ResetFailedUnit", "s", [unit])
        except DBusError as e:
            if e.name != "org.freedesktop.systemd1.NoSuchUnit":
                log.warning(f"unable to reset failed unit {unit}: {e}")

    def set_properties(self, unit: str, props: list) -> None:
        from .dbus import DBusError
        if not props:
            return
        try:
            self.call("SetUnitProperties", "sba(sv)", [unit, True, props])
        except DBusError as e:
            raise RuntimeFailure(f"unable to set unit properties of {unit}: {e}") from None


class Scope:
    """One container's scope while `create` runs: the connection, the annotations' properties,
    and the resources, held until the init joins (a scope cannot exist without a process). A
    host without systemd fails at once, before anything is made; the system instance is
    connected to only in connect(), after the init was released (that costs a round trip)."""

    def __init__(self, unit: dict, conn: Systemd | None, props: list) -> None:
        self.unit = unit
        self.conn: Systemd | None = conn
        self.props = props
        self.resources: dict | None = None
        self.field = "linux.resources"
        self.started = False

    @classmethod
    def open(cls, cgroups_path: str | None, container_id: str, annotations: dict | None
             ) -> "Scope":
        unit = parse(cgroups_path, container_id, use_user_instance())
        props = annotation_properties(annotations)
        if not unit["user"]:
            if not running():
                raise RuntimeFailure(NOT_RUNNING)
            return cls(unit, None, props)
        conn = Systemd(True)  # the user instance's slices live below its own cgroup
        try:
            root = str(conn.manager_property("ControlGroup"))
        except Exception:
            conn.close()
            raise
        unit["path"] = root.rstrip("/") + unit["path"]
        return cls(unit, conn, props)

    def connect(self) -> None:
        if self.conn is None:
            self.conn = Systemd(self.unit["user"])

    def start(self, mgr, pid: int) -> None:
        """StartTransientUnit with `pid` in it; then, as runc, the v1 directories systemd does
        not manage (cpuset, freezer, ...) and every resource into the files through the fs
        driver's code (mgr.apply): what systemd has no property for, and exact values."""
        from . import common
        self.connect()
        assert self.conn is not None
        v1 = mgr.mode != "v2"
        version = self.conn.version() if needs_version(self.resources or {}) else 0
        props = unit_properties(self.unit, pid, v1) + self.props + \
            resource_properties(self.resources, v1, version, devices=True, path=self.field)
        self.conn.start(self.unit["unit"], props)
        self.started = True
        for d in mgr.dirs():
            if not os.path.isdir(d):
                common.mkdirs(d, mgr.created)
                if d == mgr.paths.get("cpuset"):
                    common.init_cpuset(d)
            if v1 and d != mgr.paths.get("name=systemd"):
                common.write(d, "cgroup.procs", str(pid))
        mgr.apply(self.resources, self.field)

    def close(self, stop: bool) -> None:
        """Done with the connection; stop the unit first if it was started (a failed create)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if stop and self.started:
                conn.stop(self.unit["unit"])
        finally:
            conn.close()


def set_resources(unit: dict, mode: str, resources: dict, path: str) -> None:
    """`update`: SetUnitProperties with what the resources translate to (runc does this before
    writing the files; the device rules only when given)."""
    conn = Systemd(bool(unit.get("user")))
    try:
        version = conn.version() if needs_version(resources) else 0
        conn.set_properties(unit["unit"], resource_properties(
            resources, mode != "v2", version, "devices" in resources, path))
    finally:
        conn.close()


def stop_recorded(cgroup: dict) -> None:
    """`delete`: stop the recorded unit, then remove what is left (sub-cgroups the container
    made, which older systemd versions keep; the v1 directories runp made itself)."""
    from .. import cgroup_recorded
    unit = cgroup["systemd"]
    if unit.get("started", True):
        sd = Systemd(bool(unit.get("user")))
        try:
            sd.stop(unit["unit"])
        finally:
            sd.close()
    leaves = cgroup_recorded.dirs(cgroup.get("paths") or {}, cgroup.get("unified"))
    cgroup_recorded.remove(leaves, list(cgroup.get("created") or []) + leaves)
