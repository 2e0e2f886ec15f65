"""The "linux: rootfsPropagation" cases: linux.rootfsPropagation (config-linux.md Rootfs Mount
Propagation)."""
from __future__ import annotations

from harness import (DEFAULT_CAPS, T, find_mount, inside_mounts, mount_points_under, parse_mountinfo,
                     read)
from registry import case, check, eq


G = "linux: rootfsPropagation"


def _root_mount(t: T, prop: str) -> dict:
    b = t.bundle("cat", "/proc/self/mountinfo")
    b.linux["rootfsPropagation"] = prop
    return find_mount(inside_mounts(t.ok_run(b)), "/")


@case(G, "propagation.shared", "shared: the root mount is in a peer group of its own",
      "config-linux.md#rootfs-mount-propagation", "shared: the rootfs mount belongs to a new peer group. ... Note this does not mean that it's shared with the host.")
def _(t: T):
    opt = _root_mount(t, "shared")["optional"]
    groups = [o for o in opt if o.startswith("shared:")]
    check(bool(groups), f"/ is not shared: {opt}")
    host_groups = {o for m in parse_mountinfo(read("/proc/self/mountinfo")) for o in m["optional"]}
    check(groups[0] not in host_groups, f"/ shares {groups[0]} with the host")


@case(G, "propagation.private", "private: the root mount propagates nothing",
      "config-linux.md#rootfs-mount-propagation", "private: the rootfs mount doesn't receive mount propagation events from the host")
def _(t: T):
    opt = _root_mount(t, "private")["optional"]
    eq(opt, [], "propagation fields of /")


@case(G, "propagation.slave", "slave: the root mount is not shared",
      "config-linux.md#rootfs-mount-propagation", "slave: the rootfs mount receives propagation events from the host ... but not the other way around.")
def _(t: T):
    opt = _root_mount(t, "slave")["optional"]
    check(not any(o.startswith("shared:") for o in opt), f"/ is shared: {opt}")


@case(G, "propagation.unbindable", "unbindable: the root mount cannot be bind-mounted",
      "config-linux.md#rootfs-mount-propagation", "unbindable: the rootfs mount is a private mount that cannot be bind-mounted.")
def _(t: T):
    opt = _root_mount(t, "unbindable")["optional"]
    check("unbindable" in opt, f"/ is not unbindable: {opt}")


@case(G, "propagation.no_leak", "mounts made in a shared-root container do not reach the host",
      "config-linux.md#rootfs-mount-propagation", "shared ... Note this does not mean that it's shared with the host.")
def _(t: T):
    b = t.bundle().sh("mount -t tmpfs tmpfs /mnt && touch /mnt/inner && echo mounted")
    (b.rootfs / "mnt").mkdir()
    b.linux["rootfsPropagation"] = "shared"
    b.process["capabilities"] = {k: ["CAP_SYS_ADMIN"] + DEFAULT_CAPS for k in ("bounding", "effective", "permitted")}
    b.process.pop("noNewPrivileges")
    eq(t.ok_run(b).out.strip(), "mounted", "the mount inside")
    check(not (b.rootfs / "mnt" / "inner").exists(), "the container's mount reached the host")
    check(not mount_points_under(str(b.path)), "a mount under the bundle appeared on the host")
