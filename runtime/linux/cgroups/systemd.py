"""The systemd cgroup driver's naming: "slice:prefix:name" to a cgroup path.

runc asks systemd (over D-Bus) to create a transient scope unit; runp has no D-Bus client yet
and manages the same directory itself (the path systemd would use: the expanded slice, then
"<prefix>-<name>.scope"). systemd does not know the unit, so `systemctl` cannot show it and
systemd-specific properties (org.systemd.property.* annotations) are not applied.
"""
from __future__ import annotations

from ...errors import ConfigError

FIELD = "linux.cgroupsPath"


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


def parse(cgroups_path: str | None, container_id: str) -> dict:
    """The systemd unit for a cgroupsPath: {"slice", "prefix", "name", "unit", "path"}.

    No cgroupsPath means runc's default: "system.slice:runc:<id>"."""
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
    slice_path = expand_slice(slice_name) if slice_name else "/system.slice"
    unit = name if name.endswith(".slice") else f"{prefix}-{name}.scope"
    path = (slice_path.rstrip("/") + "/" + unit)
    return {"slice": slice_name or "system.slice", "prefix": prefix, "name": name,
            "unit": unit, "path": path}
