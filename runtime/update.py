"""`runp update`: change the cgroup resources of a running (or paused, or created) container.

Two ways in, as with runc: `--resources FILE` (or `-` for stdin) holding a runtime-spec
LinuxResources object (podman writes a file, containerd's shim pipes it), or runc's individual
flags (--memory 512m, --cpu-quota 50000, ...). Only the fields given are written; the others
keep their values. Errors name the flag or the JSON path in the resources document.
"""
from __future__ import annotations

from .errors import ConfigError, NotRunning, RuntimeFailure

# flag -> (section, key, kind); kind: "size" (512m, -1), "int", "uint", "str"
FLAG_FIELDS: dict[str, tuple[str, str, str]] = {
    "memory": ("memory", "limit", "size"),
    "memory-reservation": ("memory", "reservation", "size"),
    "memory-swap": ("memory", "swap", "size"),
    "kernel-memory": ("memory", "kernel", "size"),
    "kernel-memory-tcp": ("memory", "kernelTCP", "size"),
    "cpu-shares": ("cpu", "shares", "uint"),
    "cpu-period": ("cpu", "period", "uint"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-burst": ("cpu", "burst", "uint"),  # runc 1.2: cpu.cfs_burst_us (v1), cpu.max.burst (v2)
    "cpu-idle": ("cpu", "idle", "int"),  # runc 1.3: cpu.idle (0 or 1)
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "pids-limit": ("pids", "limit", "int"),
    "blkio-weight": ("blockIO", "weight", "uint"),
}
# the CLI's flag spec: runc spells it --cpu-share; --cpu-shares is accepted too
UPDATE_FLAGS: dict = {name: ((f"--{name}",), True) for name in FLAG_FIELDS}
UPDATE_FLAGS["cpu-shares"] = (("--cpu-shares", "--cpu-share"), True)
UPDATE_FLAGS["resources"] = (("--resources", "-r"), True)
UPDATE_FLAGS["l3-cache-schema"] = (("--l3-cache-schema",), True)
UPDATE_FLAGS["mem-bw-schema"] = (("--mem-bw-schema",), True)

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """A byte count as runc takes it (docker's RAMInBytes): "1024", "512m", "1.5g", "64MiB",
    "2 GB" (all binary multiples); "-1" means unlimited."""
    s = text.strip()
    if s == "-1":
        return -1
    low = s.lower()
    for suffix in ("ib", "b"):
        if low.endswith(suffix) and len(low) > len(suffix) and low[-len(suffix) - 1] in "kmgtp":
            low = low[:-len(suffix)]
            break
    unit = low[-1] if low and low[-1] in "kmgtp" else ""
    num = low[:-1] if unit else low
    num = num.rstrip()
    try:
        if not num or not num.replace(".", "", 1).isdigit():
            raise ValueError
        value = float(num) if "." in num else int(num)
    except ValueError:
        raise ValueError(f"invalid size: {text!r}") from None
    return int(value * _UNITS[unit])


def resources_from_flags(flags: dict) -> dict:
    """The LinuxResources object the individual flags describe."""
    res: dict = {}
    for name, (section, key, kind) in FLAG_FIELDS.items():
        raw = flags.get(name)
        if raw is None:
            continue
        try:
            if kind == "size":
                value: object = parse_size(raw)
            elif kind == "str":
                value = raw
            else:
                value = int(raw)
                if kind == "uint" and value < 0:
                    raise ValueError
        except ValueError:
            raise RuntimeFailure(f"invalid value {raw!r} for flag --{name}") from None
        res.setdefault(section, {})[key] = value
    return res


def read_resources(source: str, stdin) -> dict:
    """--resources FILE or "-": a LinuxResources JSON object."""
    from . import jsonlite
    name = "standard input" if source == "-" else source
    try:
        if source == "-":
            data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
        else:
            with open(source, "rb") as f:
                data = f.read()
    except OSError as e:
        raise RuntimeFailure(f"--resources {name}: {e.strerror}") from None
    try:
        res = jsonlite.loads(data)
    except ValueError as e:
        raise RuntimeFailure(f"--resources {name}: invalid JSON: {e}") from None
    if not isinstance(res, dict):
        raise RuntimeFailure(f"--resources {name}: must be a JSON object (LinuxResources)")
    return res


def _flag_for(path: str) -> str | None:
    """The flag that set the field an error names ("memory.limit" -> "--memory")."""
    for name, (section, key, _) in FLAG_FIELDS.items():
        if path == f"{section}.{key}" or path.startswith(f"{section}.{key}."):
            return f"--{name}"
    return None


def update(root: str, container_id: str, flags: dict, stdin) -> None:
    from .container import Container
    source = flags.get("resources")
    res = read_resources(source, stdin) if source else resources_from_flags(flags)
    c = Container(root, container_id)
    status = c.status()
    if status == "stopped":
        raise NotRunning(container_id)
    l3, mb = flags.get("l3-cache-schema"), flags.get("mem-bw-schema")
    if l3 is not None or mb is not None:  # runc's flags: the resctrl group's schemata
        from .linux import intelrdt
        intelrdt.update(c.state.extra.get("intel_rdt") or {}, c.spec().linux.intel_rdt, l3, mb)
        if not res:
            return
    if not c.state.cgroup:
        raise RuntimeFailure(f"container {container_id} has no cgroup to update")
    try:
        c.cgroup().update(res, path="")
    except ConfigError as e:
        if source:
            where = "standard input" if source == "-" else source
            raise RuntimeFailure(f"--resources {where}: {e.path}: {e.problem}"
                                 if e.path else f"--resources {where}: {e.problem}") from None
        flag = _flag_for(e.path)
        raise RuntimeFailure(f"{flag}: {e.problem}" if flag else
                             f"{e.path}: {e.problem}" if e.path else e.problem) from None
    except OSError as e:
        raise RuntimeFailure(f"update {container_id}: {e.filename + ': ' if e.filename else ''}"
                             f"{e.strerror or e}") from None
