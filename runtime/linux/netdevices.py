"""linux.netDevices: host network interfaces moved into the container's network namespace.

config-linux.md: the runtime moves each named device (renamed to `name`, a "%d" in it numbered
by the kernel), re-adds its permanent addresses of global scope (the kernel drops every
address on a move) and sets it up. It MUST NOT move it back before the namespace goes away:
when the last process of the namespace exits, the kernel returns physical devices to the
initial namespace and destroys virtual ones (veth, macvlan). Only a failed `create` moves the
devices back, with their names, addresses and up state, so that it leaves nothing changed.

The parent does the moves (as runc does), once the init is in its network namespace, over
netlink with pyroute2: imported only here, by containers that set the field (it costs about
200 ms to import; tests/test_hot_path.py keeps it off the hot path).
"""
from __future__ import annotations

import errno
import os

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import ConfigError

IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0


class Moved:
    """A device now in the container's namespace, and what it had on the host."""

    def __init__(self, host_name: str, index: int, was_up: bool) -> None:
        self.host_name = host_name
        self.index = index  # its index in the container's namespace
        self.was_up = was_up


def _path(host_name: str) -> str:
    return f"linux.netDevices.{host_name}"


def _kept_addresses(ipr: IPRoute, index: int) -> list[tuple[int, str, int]]:
    """(family, address, prefix length) of the permanent, global-scope addresses (the ones
    config-linux.md says to keep; dynamic and link-local ones belong to where they were made)."""
    out = []
    for a in ipr.get_addr(index=index):
        flags = a.get_attr("IFA_FLAGS")
        flags = a["flags"] if flags is None else flags
        if not flags & IFA_F_PERMANENT or a["scope"] != RT_SCOPE_UNIVERSE:
            continue
        addr = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
        out.append((a["family"], addr, a["prefixlen"]))
    return out


def _restore(ipr: IPRoute, index: int, addrs: list[tuple[int, str, int]], up: bool) -> None:
    for family, addr, plen in addrs:
        try:
            ipr.addr("add", index=index, family=family, address=addr, prefixlen=plen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
    if up:
        ipr.link("set", index=index, state="up")


def _names(ipr: IPRoute) -> dict[str, int]:
    return {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}


def move_in(devices: dict[str, str], netns_fd: int, moved: list[Moved]) -> None:
    """Move every device into the namespace behind `netns_fd`, appending each one moved to
    `moved` at once (a failure later leaves the list complete for move_back)."""
    if os.geteuid() != 0:
        raise ConfigError("linux.netDevices", "moving network devices needs root on the host")
    with IPRoute() as host, IPRoute(netns=netns_fd, flags=0) as ns:
        for host_name, name in devices.items():
            path = _path(host_name)
            found = host.link_lookup(ifname=host_name)
            if not found:
                raise ConfigError(path, "no such network device in the runtime's namespace")
            index = found[0]
            link = host.get_links(index)[0]
            was_up = bool(link["flags"] & IFF_UP)
            addrs = _kept_addresses(host, index)  # (before the move: IPv6 ones go with "down")
            before = _names(ns)
            if "%" not in name and name in before:
                raise ConfigError(path, f'a device named "{name}" exists in the container\'s '
                                  "network namespace")
            try:
                # move and rename in one request (the name is free inside, checked above); if
                # the kernel still refuses the rename after the move, move_back gets it
                host.link("set", index=index, net_ns_fd=netns_fd, ifname=name)
            except NetlinkError as e:
                if not host.link_lookup(ifname=host_name):  # moved, then the rename failed
                    new = set(_names(ns).values()) - set(before.values())
                    if new:
                        moved.append(Moved(host_name, new.pop(), was_up))
                raise ConfigError(path, f'move to the container as "{name}": '
                                  f"{os.strerror(e.code)}") from None
            after = _names(ns)
            new = set(after.values()) - set(before.values())
            if len(new) != 1:
                raise ConfigError(path, "moved, but not found in the container's namespace")
            inside = new.pop()
            moved.append(Moved(host_name, inside, was_up))
            try:
                _restore(ns, inside, addrs, up=True)  # config-linux.md: MUST be set up
            except NetlinkError as e:
                raise ConfigError(path, f"restore its addresses and set it up in the container: "
                                  f"{os.strerror(e.code)}") from None


def move_back(netns_fd: int, moved: list[Moved]) -> list[str]:
    """Undo move_in after a failed create: each device back into the runtime's namespace under
    its host name, with its kept addresses and its up state. Returns the problems (the caller
    warns: the create has failed already)."""
    problems = []
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as host, IPRoute(netns=netns_fd, flags=0) as ns:
            for m in reversed(moved):
                try:
                    addrs = _kept_addresses(ns, m.index)
                    ns.link("set", index=m.index, net_ns_fd=own, ifname=m.host_name)
                    index = host.link_lookup(ifname=m.host_name)[0]
                    _restore(host, index, addrs, m.was_up)
                except (NetlinkError, IndexError) as e:
                    problems.append(f"{_path(m.host_name)}: cannot move it back to the host: "
                                    f"{os.strerror(e.code) if isinstance(e, NetlinkError) else e}")
    finally:
        os.close(own)
    moved.clear()
    return problems
