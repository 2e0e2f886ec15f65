"""The container's cgroup when runp is rootless (runtime/rootless.py decides when).

As runc's rootless cgroup managers: a cgroup directory the caller may not make or join is done
without, so a container without limits runs where the caller's cgroup is not delegated to it
(rootless podman on cgroup v1, an ordinary user with `runp spec --rootless`); where it is
delegated (cgroup v2 under the user's systemd instance, or a directory chowned to the user) the
cgroup is made and used as usual. A limit that needs a cgroup we may not have is an error that
names the limit's field. Device rules are best effort (Manager.create(rootless=True)).
"""
from __future__ import annotations

from ...errors import ConfigError, RuntimeFailure
from . import DENIED, Manager, common

_FIELD = "linux.resources"
# linux.resources.cpu fields and the (v1) controller that serves them
_CPU = {"shares": "cpu", "quota": "cpu", "period": "cpu", "burst": "cpu", "idle": "cpu",
        "realtimeRuntime": "cpu", "realtimePeriod": "cpu", "cpus": "cpuset", "mems": "cpuset"}


def requested(resources: dict | None) -> list[tuple[str, str]]:
    """(field, controller) for every limit linux.resources sets, the device rules excepted;
    the controller as named in v1 (Manager.where() maps it), "" for the cgroup2 files of
    `unified`. Values of the wrong type are left to Manager.apply() to report."""
    r = resources if isinstance(resources, dict) else {}
    out: list[tuple[str, str]] = []

    def obj(key: str) -> dict:
        v = r.get(key)
        return v if isinstance(v, dict) else {}

    for k, v in obj("memory").items():  # (kernel, kernelTCP: deprecated, ignored on v2 anyway)
        if k not in ("checkBeforeUpdate", "kernel", "kernelTCP") and v not in (None, False, 0, -1):
            out.append((f"{_FIELD}.memory.{k}", "memory"))
    for k, v in obj("cpu").items():
        if k in _CPU and v not in (None, ""):
            out.append((f"{_FIELD}.cpu.{k}", _CPU[k]))
    if obj("pids").get("limit") is not None:
        out.append((f"{_FIELD}.pids.limit", "pids"))
    for k, v in obj("blockIO").items():
        if v not in (None, [], 0):
            out.append((f"{_FIELD}.blockIO.{k}", "blkio"))
    if r.get("hugepageLimits"):
        out.append((f"{_FIELD}.hugepageLimits", "hugetlb"))
    net = obj("network")
    if net.get("classID") is not None:
        out.append((f"{_FIELD}.network.classID", "net_cls"))
    if net.get("priorities"):
        out.append((f"{_FIELD}.network.priorities", "net_prio"))
    if r.get("rdma"):
        out.append((f"{_FIELD}.rdma", "rdma"))
    for k in obj("unified"):
        out.append((f"{_FIELD}.unified.{k}", ""))
    return out


def _dir_of(mgr: Manager, ctrl: str) -> str | None:
    return mgr.unified if ctrl == "" else mgr.path(ctrl)


def create(mgr: Manager, resources: dict | None) -> None:
    """Make what we may of the container's cgroup and apply `resources`; a limit whose cgroup
    we may not make is a ConfigError naming it (and nothing is left behind)."""
    mgr.create(rootless=True)
    try:
        for field, ctrl in requested(resources):
            # its v1 hierarchy, or cgroup2 (which may have served it), was denied; a controller
            # this host does not have at all is left to apply() to report
            hit = (mgr.denied.get(ctrl) or mgr.denied.get("")) if _dir_of(mgr, ctrl) is None else None
            if hit is not None:
                raise ConfigError(field, f"rootless: cannot create cgroup {hit[0]}: "
                                         f"{hit[1].strerror} (the caller's cgroup is not delegated "
                                         "to it)")
        mgr.apply(resources)
    except BaseException:
        mgr.destroy()
        raise


def join(mgr: Manager, pid: int, resources: dict | None) -> None:
    """Manager.add_pid() for a rootless container: a directory we may not move the process
    into is dropped, unless a limit of linux.resources is set there. A systemd scope (the
    caller's own systemd instance) is systemd's to make with the process in it."""
    if mgr.scope is not None:
        mgr.add_pid(pid)
        return
    needed = {_dir_of(mgr, ctrl): field for field, ctrl in requested(resources)}
    for d in mgr.dirs():
        try:
            common.write(d, "cgroup.procs", str(pid))
        except OSError as e:
            if e.errno in DENIED and d not in needed:
                mgr.drop(d, e)
                continue
            where = f"config.json: {needed[d]}: rootless: " if d in needed else ""
            raise RuntimeFailure(f"{where}cannot add process {pid} to cgroup {d}: "
                                 f"{e.strerror}") from None
