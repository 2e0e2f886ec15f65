"""linux.intelRdt: the container in a resctrl group (Intel RDT / AMD PQoS cache and memory
bandwidth allocation), as config-linux.md and runc's libcontainer/intelrdt do it.

The group is a directory of the resctrl filesystem: `closID`, or the container id when that is
not set (then made by runp and removed on delete). Its `schemata` file gets l3CacheSchema,
memBwSchema and the `schemata` lines, in that order; a pre-existing `closID` group is compared
instead (the spec: error if it differs) or, without any schemata, must exist. The init's pid
goes into its `tasks` file (every process of the container descends from it); with
enableMonitoring also into a MON group `mon_groups/<container id>`. The parent does this before
`start`, so the container process runs in the group from its first instruction.

find_root() locates resctrl through the runtime's mountinfo, as runc does. Tests point it at a
directory shaped like resctrl by replacing the function in-process (Python API only): no flag,
variable or file can move it, so a caller cannot have runp write pids into another directory.
"""
from __future__ import annotations

import errno
import os

from ..errors import ConfigError, RuntimeFailure
from ..spec import IntelRdt

PATH = "linux.intelRdt"


def find_root() -> str | None:
    """The mount point of the first resctrl filesystem in our mount namespace, or None."""
    from .mountinfo import parse
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for m in parse(f.read()):
            if m.fstype == "resctrl":
                return m.mountpoint
    return None


def _root(path: str) -> str:
    root = find_root()
    if root is None:  # config-linux.md: MUST generate an error
        raise ConfigError(path, "no resctrl filesystem is mounted in the runtime's mount "
                          "namespace (mount -t resctrl resctrl /sys/fs/resctrl)")
    return root


def _last_cmd_status(root: str) -> str:
    """resctrl's own reason for the last refused write (info/last_cmd_status)."""
    try:
        with open(os.path.join(root, "info", "last_cmd_status")) as f:
            status = f.read().strip()
    except OSError:
        return ""
    return f" (resctrl: {status})" if status and status != "ok" else ""


def schemata_lines(rdt: IntelRdt) -> list[tuple[str, str]]:
    """(JSON path, line) in the order the spec says they are written."""
    out = [(f"{PATH}.l3CacheSchema", rdt.l3_cache_schema), (f"{PATH}.memBwSchema", rdt.mem_bw_schema)]
    out += [(f"{PATH}.schemata[{i}]", s) for i, s in enumerate(rdt.schemata)]
    return [(p, s) for p, s in out if s]


def _parse_line(line: str) -> tuple[str, dict[str, str]]:
    res, _, rest = line.strip().partition(":")
    vals = {}
    for part in rest.split(";"):
        k, _, v = part.partition("=")
        if k.strip():
            vals[k.strip()] = v.strip().lower()
    return res.strip(), vals


def _same(res: str, want: str, have: str) -> bool:
    """One domain's value as resctrl reads it back: a bitmask in hex (L3, L2, ...) or a
    bandwidth in decimal (MB), without leading zeros."""
    try:
        base = 10 if res.startswith("MB") else 16
        return int(want, base) == int(have, base)
    except ValueError:
        return want == have


def _compare(group: str, lines: list[tuple[str, str]]) -> None:
    with open(os.path.join(group, "schemata")) as f:
        have = dict(_parse_line(line) for line in f if line.strip())
    for path, line in lines:
        res, want = _parse_line(line)
        got = have.get(res, {})
        if any(k not in got or not _same(res, v, got[k]) for k, v in want.items()):
            raise ConfigError(path, f'the existing resctrl group {group} differs: wants "{line}",'
                              f' has "{res}:{";".join(f"{k}={v}" for k, v in got.items())}"')


def _write(root: str, file: str, data: str, path: str) -> None:
    try:
        with open(file, "w") as f:
            f.write(data)
    except OSError as e:
        raise ConfigError(path, f"write {file}: {e.strerror}{_last_cmd_status(root)}") from None


def _group(root: str, rdt: IntelRdt, container_id: str) -> tuple[str, bool]:
    """The group's directory, and whether apply makes it if it is missing (not the default
    group, nor a closID given without schemata: that one must exist)."""
    clos = rdt.clos_id or container_id
    if clos == "/":
        return root, False
    return os.path.join(root, clos), not (rdt.clos_id and not schemata_lines(rdt))


def planned(rdt: IntelRdt, container_id: str) -> dict:
    """What apply is about to make, in the form of its record: create writes it down first
    (CREATING_FILE), so that a `delete` after create was killed midway removes the group and
    the MON group. Only a directory missing now is listed: one that exists is someone else's."""
    root = _root(PATH)
    group, makes = _group(root, rdt, container_id)
    mon = os.path.join(group, "mon_groups", container_id)
    return {"root": root, "path": group, "made": makes and not os.path.isdir(group),
            "mon": mon if rdt.enable_monitoring and not os.path.isdir(mon) else ""}


def apply(rdt: IntelRdt, container_id: str, pid: int) -> dict:
    """Put `pid` in the container's group, made and written as the spec says. Returns what
    delete and update need (kept in state.json); on error nothing made is left."""
    root = _root(PATH)
    group, makes = _group(root, rdt, container_id)
    lines = schemata_lines(rdt)
    made = False
    if rdt.clos_id and not lines:
        if not os.path.isdir(group):
            raise ConfigError(f"{PATH}.closID", f"resctrl group {group} does not exist (without "
                              "schemata it must have been made beforehand)")
    elif makes:
        try:
            os.mkdir(group, 0o755)
            made = True
        except FileExistsError:
            pass
        except OSError as e:
            raise ConfigError(PATH, f"mkdir {group}: {e.strerror}{_last_cmd_status(root)}") from None
    rec = {"root": root, "path": group, "made": made, "mon": ""}
    try:
        if lines and (made or not rdt.clos_id):
            _write(root, os.path.join(group, "schemata"), "".join(s + "\n" for _, s in lines), PATH)
        elif lines:
            _compare(group, lines)
        if rdt.enable_monitoring:
            mon = os.path.join(group, "mon_groups", container_id)
            try:
                os.mkdir(mon, 0o755)
                rec["mon"] = mon
            except OSError as e:  # (runc accepts one that exists; the spec: MUST error)
                raise ConfigError(f"{PATH}.enableMonitoring", f"mkdir {mon}: {e.strerror}"
                                  f"{_last_cmd_status(root)}") from None
        add_task(rec, pid)
    except BaseException:
        remove(rec)
        raise
    return rec


def add_task(rec: dict, pid: int) -> None:
    """`pid` into the container's group and its MON group: the init at create, and each
    process `runp exec` starts (it descends from runp, not from the init; runc does the same
    for the group)."""
    for key, path in (("path", PATH), ("mon", f"{PATH}.enableMonitoring")):
        if rec.get(key):
            _write(rec["root"], os.path.join(rec[key], "tasks"), str(pid), path)


def remove(rec: dict) -> None:
    """Delete what apply made: the MON group, and the group if runp made it (a closID group
    belongs to whoever made it). rmdir moves any remaining tasks back to the default group."""
    for key in ("mon", "path"):
        path = rec.get(key) if key == "mon" or rec.get("made") else None
        if not path:
            continue
        try:
            os.rmdir(path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise


def update(rec: dict, rdt: IntelRdt | None, l3: str | None, mb: str | None) -> None:
    """`runp update --l3-cache-schema/--mem-bw-schema`: the group's schemata written again
    with the new lines (runc's order: L3, MB, then the config's schemata)."""
    for flag, value, prefix in (("--l3-cache-schema", l3, ""), ("--mem-bw-schema", mb, "MB:")):
        if value is not None and ("\n" in value or not value.startswith(prefix)):
            raise RuntimeFailure(f"{flag}: {value!r} must start with {prefix!r} and be one line"
                                 if prefix else f"{flag}: {value!r} must be one line")
    if rdt is None or not rec:
        raise RuntimeFailure("updating a non-existent Intel RDT configuration is not supported "
                             "(the container has no linux.intelRdt)")
    root = _root(PATH)
    for flag, value, info in (("--l3-cache-schema", l3, "L3"), ("--mem-bw-schema", mb, "MB")):
        if value is not None and not os.path.isdir(os.path.join(root, "info", info)):
            raise RuntimeFailure(f"{flag}: this host's resctrl has no {info} resource")
    new = IntelRdt(rdt.clos_id, l3 if l3 is not None else rdt.l3_cache_schema,
                   mb if mb is not None else rdt.mem_bw_schema, rdt.schemata)
    data = "".join(s + "\n" for _, s in schemata_lines(new))
    try:
        with open(os.path.join(rec["path"], "schemata"), "w") as f:
            f.write(data)
    except OSError as e:
        raise RuntimeFailure(f"update {rec['path']}/schemata: {e.strerror}"
                             f"{_last_cmd_status(root)}") from None
