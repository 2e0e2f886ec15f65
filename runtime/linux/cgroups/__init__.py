"""Container cgroups on cgroup v1, v2 and hybrid hosts.

    mgr = open_manager(cgroups_path, container_id, systemd=False)
    mgr.create(); mgr.apply(resources); mgr.add_pid(pid)
    state["cgroups"] = mgr.to_dict()   # later: Manager.from_dict(state["cgroups"])

On a hybrid host the v1 controllers get v1 files, a controller found only on the cgroup2
mount (e.g. hugetlb) goes through the v2 files, and processes join both trees.  Everything
the per-version code needs is imported lazily: reopening a manager to delete, pause or list a
container costs a few file reads.
"""
from __future__ import annotations

import errno
import os

from ...errors import ConfigError, RuntimeFailure
from .. import cgroup_recorded
from . import common

__all__ = ["detect", "open_manager", "Manager"]

_V2_NAME = {"blkio": "io"}
# errors that say a cgroup is not ours (rootless): no write access, or a read-only cgroupfs
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
_STATE_VERSION = 1


def detect() -> str:
    """ "v2" (cgroup2 at /sys/fs/cgroup), "hybrid" (v1 controllers plus cgroup2 at
    /sys/fs/cgroup/unified) or "v1"."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2"
    if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
        return "hybrid"
    return "v1"


def open_manager(cgroups_path: str | None, container_id: str, *, systemd: bool = False,
                 mode: str | None = None, annotations: dict | None = None) -> "Manager":
    """The container's cgroups (nothing is created yet).

    cgroupsPath: absolute = below the hierarchy roots; relative = below the runtime's own
    cgroup (v1: per hierarchy; v2: its parent, as the runtime's own cgroup has processes);
    unset = the container id, relative (runc's default). With systemd=True the path is
    "slice:prefix:name" (unset: "system.slice:runc:<id>"): a systemd scope (systemd.Scope),
    which the org.systemd.property.* annotations configure too.
    """
    mode = mode or detect()
    field = "linux.cgroupsPath"
    unit = scope = None
    if cgroups_path is not None and not isinstance(cgroups_path, str):
        raise ConfigError(field, "must be a string")
    if systemd:
        from . import systemd as sd
        scope = sd.Scope.open(cgroups_path, container_id, annotations)
        unit, inner, absolute = scope.unit, scope.unit["path"], True
    elif cgroups_path:
        inner = common.clean_path(cgroups_path)
        absolute = inner.startswith("/")
    else:
        inner, absolute = common.clean_path(container_id), False
    if inner in ("", "/"):
        raise ConfigError(field, f"{cgroups_path!r} names the cgroup of the runtime or the root")

    own = None if absolute else common.own_cgroups()
    paths: dict[str, str] = {}
    unified = None
    hierarchies = common.v1_mounts() if mode in ("v1", "hybrid") else []
    if hierarchies:
        for mnt, root, ctrls in hierarchies:
            if absolute:
                d = common.join(mnt, inner)
            else:
                assert own is not None
                d = common.join(common.own_v1_dir(mnt, root, ctrls, own), inner)
            for c in ctrls:
                paths[c] = d
    if mode in ("v2", "hybrid"):
        base = common.v2_root(mode)
        if absolute:
            unified = common.join(base, inner)
        else:
            assert own is not None
            unified = common.join(base, os.path.dirname(own.get("", "/")) or "/", inner)
    mgr = Manager(mode, paths, unified, [], unit)
    mgr.hierarchies = hierarchies
    mgr.scope = scope
    return mgr


class Manager:
    """One container's cgroups: a directory per v1 hierarchy and/or one cgroup2 directory."""

    def __init__(self, mode: str, paths: dict[str, str], unified: str | None,
                 created: list[str] | None = None, systemd: dict | None = None) -> None:
        self.mode = mode
        self.paths = dict(paths)          # v1 controller (or "name=systemd") -> directory
        self.unified = unified            # the cgroup2 directory (v2 and hybrid)
        self.created = list(created or [])
        self.systemd = systemd
        self._v2ctl: set[str] | None = None
        self.rootless = False  # create(rootless=True): device rules are best effort
        self.denied: dict[str, tuple[str, OSError]] = {}  # see drop()
        # the host's v1 hierarchies as open_manager() found them (common.v1_mounts(): the
        # init's cgroup mounts need them); not kept in state.json
        self.hierarchies: list[tuple[str, str, frozenset[str]]] = []
        self.scope = None  # systemd, during create: the scope to start (systemd.Scope)

    # --- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        d = {"version": _STATE_VERSION, "mode": self.mode, "paths": self.paths,
             "unified": self.unified, "created": self.created}
        if self.systemd:
            d["systemd"] = self.systemd
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Manager":
        return cls(d["mode"], d.get("paths") or {}, d.get("unified"), d.get("created") or [],
                   d.get("systemd"))

    def __repr__(self) -> str:
        return f"Manager({self.mode}, {self.dirs()})"

    # --- where things are -----------------------------------------------------------------

    def dirs(self) -> list[str]:
        """The container's cgroup directories (each once): v1 hierarchies, then cgroup2."""
        return cgroup_recorded.dirs(self.paths, self.unified)

    def _v2_controllers(self) -> set[str]:
        if self._v2ctl is None:
            from .common import controllers
            assert self.unified is not None
            d = self.unified
            ctl = controllers(d) if os.path.isdir(d) else set()
            self._v2ctl = ctl
        return self._v2ctl

    def where(self, ctrl: str) -> tuple[str, str] | None:
        """("v1", dir) or ("v2", dir) for a controller named as in v1 ("blkio", "cpu",
        "devices", "freezer", ...), None when this host cannot serve it."""
        d = self.paths.get(ctrl)
        if d:
            return ("v1", d)
        if self.unified:
            if ctrl in ("devices", "freezer"):     # eBPF and cgroup.freeze: core v2
                return ("v2", self.unified)
            if _V2_NAME.get(ctrl, ctrl) in self._v2_controllers():
                return ("v2", self.unified)
        return None

    def path(self, ctrl: str = "") -> str | None:
        """The directory for a controller ("" = the cgroup2 directory, else the first v1)."""
        if not ctrl:
            return self.unified or next(iter(self.paths.values()), None)
        w = self.where(ctrl)
        return w[1] if w else None

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs())

    # --- lifecycle ------------------------------------------------------------------------

    def create(self, rootless: bool = False) -> None:
        """Make the directories (v2: enabling controllers down the path). Refuses a cgroup
        that already exists with processes in it or frozen, like runc. A systemd scope is
        made when the init joins it (add_pid); here only the connection to systemd.
        `rootless`: a directory we may not make is dropped (drop()) instead, and device rules
        become best effort (cgroups/rootless.py says when that is allowed)."""
        if self.scope is not None:
            self.scope.connect()
            return
        primary = self.path("devices") or self.path()
        if primary and os.path.isdir(primary):
            n = len(self.pids())
            if n:
                raise ConfigError("linux.cgroupsPath",
                                  f"container's cgroup is not empty: {n} process(es) found")
        created: list[str] = []
        self.rootless = rootless
        try:
            for d in self.dirs():
                try:
                    common.mkdirs(d, created)
                except OSError as e:
                    if not (rootless and e.errno in DENIED):
                        raise
                    self.drop(d, e)
                    continue
                if d == self.unified:
                    common.enable_controllers(common.v2_root(self.mode), d)
                elif d == self.paths.get("cpuset"):
                    common.init_cpuset(d)
            self._refuse_frozen()
        except (OSError, RuntimeFailure) as e:
            self.created = created
            try:
                self.destroy()
            except RuntimeFailure:
                pass
            if isinstance(e, RuntimeFailure):
                raise
            raise RuntimeFailure(f"cannot create cgroup {e.filename or ''}: {e.strerror}") \
                from None
        self.created = self.created + [c for c in created if c not in self.created]
        self._v2ctl = None
        leaves = self.dirs()
        for d in created:
            if d not in leaves:
                cgroup_recorded.mark_parent(d)   # shared with later siblings: see remove()

    def _refuse_frozen(self) -> None:
        """A cgroup frozen already, itself or through a parent, in ANY hierarchy with a freezer
        (v1's, and cgroup2's cgroup.freeze even on a hybrid host, where runp pauses with v1):
        the init would stop on joining it and create would hang (runc 1.1.5 hangs on the cgroup2
        one). Refused at once, as runc refuses a frozen v1 cgroup, naming the field."""
        d = self.paths.get("freezer")
        if d and os.path.isdir(d) and \
                common.read(d, "freezer.state").strip() != "THAWED":
            raise ConfigError("linux.cgroupsPath", f"container's cgroup unexpectedly frozen ({d})")
        d = self.unified
        if d and os.path.isdir(d) and common.read_keyed(d, "cgroup.events").get("frozen"):
            raise ConfigError("linux.cgroupsPath", f"container's cgroup unexpectedly frozen ({d})")

    def drop(self, d: str, err: OSError) -> None:
        """Do without the directory `d` (rootless: not ours to make or join); what it would
        have served is kept in `denied` (controller, "" for cgroup2 -> (dir, error)) for the
        error message of a resource that needed it."""
        for ctrl in [c for c, p in self.paths.items() if p == d]:
            del self.paths[ctrl]
            self.denied[ctrl] = (d, err)
        if self.unified == d:
            self.unified = None
            self.denied[""] = (d, err)
        self._v2ctl = None

    def destroy(self) -> None:
        """Remove the directories create() made (cgroup_recorded.remove), after stopping
        the systemd scope (a failed create leaves no unit)."""
        if self.scope is not None:
            scope, self.scope = self.scope, None
            scope.close(stop=True)
        try:
            cgroup_recorded.remove(self.dirs(), self.created)
        finally:
            self.created = [d for d in self.created if os.path.isdir(d)]

    def add_pid(self, pid: int) -> None:
        """Move a process into every hierarchy (each v1 one and the cgroup2 one). The first
        one starts a systemd scope."""
        if self.scope is not None and not self.scope.started:
            self.scope.start(self, pid)
            return
        for d in self.dirs():
            try:
                common.write(d, "cgroup.procs", str(pid))
            except OSError as e:
                raise RuntimeFailure(f"cannot add process {pid} to cgroup {d}: {e.strerror}") \
                    from None

    def ensure_made(self, pid: int) -> None:
        """The directories exist after this: create() made them, or systemd makes the scope
        now, with `pid` (the init) in it."""
        if self.scope is not None and not self.scope.started:
            self.scope.start(self, pid)

    def move_to_runtime_cgroups(self, pid: int) -> None:
        """Put a process back into the cgroups runp itself is in, in every hierarchy the
        container uses (the init, after a visit to make its cgroup namespace there). Not out
        of a systemd scope: systemd removes it once empty."""
        if self.systemd:
            return
        own = common.own_cgroups()
        dirs = []
        if self.paths:
            for mnt, root, ctrls in self.hierarchies or common.v1_mounts():
                if any(c in self.paths and c in own for c in ctrls):
                    dirs.append(common.own_v1_dir(mnt, root, ctrls, own))
        if self.unified:
            dirs.append(common.join(common.v2_root(self.mode), own.get("", "/")))
        for d in dirs:
            try:
                common.write(d, "cgroup.procs", str(pid))
            except OSError as e:
                raise RuntimeFailure(f"cannot move process {pid} back to cgroup {d}: "
                                     f"{e.strerror}") from None

    # --- resources ------------------------------------------------------------------------

    def apply(self, resources: dict | None, path: str = "linux.resources") -> None:
        """Write linux.resources (the device rules always: the config's, then the default
        devices). A field the host cannot apply is a ConfigError naming it. A systemd scope
        gets them when it starts (add_pid)."""
        if self.scope is not None and not self.scope.started:
            self.scope.resources, self.scope.field = resources, path
            return
        self._apply(resources, path, update=False)

    def update(self, resources: dict, path: str = "linux.resources") -> None:
        """Change the resources of a running container: only the fields given (device rules
        only when "devices" is present), honouring memory.checkBeforeUpdate; with systemd,
        the unit's properties first."""
        if self.systemd:
            from . import systemd as sd
            sd.set_resources(self.systemd, self.mode, resources, path)
        self._apply(resources, path, update=True)

    def _apply(self, r: dict | None, path: str, update: bool) -> None:
        r = r or {}
        if not isinstance(r, dict):
            raise ConfigError(path, "must be an object")
        pre = path + "." if path else ""

        def unsupported(ctrl: str, field: str) -> ConfigError:
            return common.not_supported(field, f"no {ctrl} cgroup controller")

        if not update or "devices" in r:
            try:
                self._set_devices(common.get_list(r, "devices", path), pre + "devices")
            except RuntimeFailure:
                # rootless (as runc): the device rules need CAP_SYS_ADMIN (v1) or CAP_BPF (v2)
                # on the host; a container cannot make device nodes in a user namespace anyway
                if not self.rootless:
                    raise

        cpu = common.get_obj(r, "cpu", path)
        if cpu:
            f = pre + "cpu"
            cpus = common.get_str(cpu, "cpus", f)
            mems = common.get_str(cpu, "mems", f)
            if cpus or mems:
                w = self.where("cpuset")
                if w is None:
                    raise unsupported("cpuset", f + (".cpus" if cpus else ".mems"))
                from .v1 import set_cpuset
                set_cpuset(w[1], cpus, mems, f)

        mem = common.get_obj(r, "memory", path)
        if mem:
            f = pre + "memory"
            w = self.where("memory")
            if w is None:
                key = next((k for k in ("limit", "reservation", "swap", "swappiness",
                                        "disableOOMKiller", "useHierarchy")
                            if mem.get(k) not in (None, False, 0)), None)
                if key:
                    raise unsupported("memory", f"{f}.{key}")
            elif w[0] == "v1":
                from . import v1
                v1.set_memory(w[1], mem, f, update)
            else:
                from . import v2
                v2.set_memory(w[1], mem, f, update)

        if cpu:
            f = pre + "cpu"
            keys = [k for k in ("shares", "quota", "period", "burst", "realtimeRuntime",
                                "realtimePeriod", "idle") if cpu.get(k) is not None]
            if keys:
                w = self.where("cpu")
                if w is None:
                    raise unsupported("cpu", f"{f}.{keys[0]}")
                if w[0] == "v1":
                    from . import v1
                    cpu_mnt_parents = sorted((c for c in self.created
                                              if w[1].startswith(c + "/")),
                                             key=lambda p: p.count("/"))
                    v1.set_cpu(w[1], cpu, f, cpu_mnt_parents)
                else:
                    from . import v2
                    v2.set_cpu(w[1], cpu, f, update)

        pids = common.get_obj(r, "pids", path)
        if pids:
            f = pre + "pids"
            limit = common.get_int(pids, "limit", f)
            if limit is not None:
                w = self.where("pids")
                if w is None:
                    raise unsupported("pids", f"{f}.limit")
                from .v1 import pids_value
                common.write_field(f"{f}.limit", w[1], "pids.max", pids_value(limit))

        blkio = common.get_obj(r, "blockIO", path)
        if blkio:
            f = pre + "blockIO"
            keys = [k for k, v in blkio.items() if v not in (None, [], 0)]
            if keys:
                w = self.where("blkio")
                if w is None:
                    raise unsupported("blkio", f"{f}.{keys[0]}")
                if w[0] == "v1":
                    from . import v1
                    v1.set_blkio(w[1], blkio, f)
                else:
                    from . import v2
                    v2.set_io(w[1], blkio, f)

        huge = common.get_list(r, "hugepageLimits", path)
        if huge:
            f = pre + "hugepageLimits"
            w = self.where("hugetlb")
            if w is None:
                raise unsupported("hugetlb", f)
            from . import v1
            v1.set_hugetlb(w[1], huge, f, v2=w[0] == "v2")

        net = common.get_obj(r, "network", path)
        if net:
            f = pre + "network"
            classid = common.get_int(net, "classID", f, lo=0, hi=0xFFFFFFFF)
            if classid is not None:
                w = self.where("net_cls")
                if w is None or w[0] != "v1":
                    raise unsupported("net_cls", f"{f}.classID")
                common.write_field(f"{f}.classID", w[1], "net_cls.classid", str(classid))
            prios = common.get_list(net, "priorities", f)
            if prios:
                w = self.where("net_prio")
                if w is None or w[0] != "v1":
                    raise unsupported("net_prio", f"{f}.priorities")
                for i, p in enumerate(prios):
                    pf = f"{f}.priorities[{i}]"
                    if not isinstance(p, dict):
                        raise ConfigError(pf, "must be an object")
                    name = common.get_str(p, "name", pf)
                    prio = common.get_int(p, "priority", pf, lo=0, hi=0xFFFFFFFF)
                    if not name or prio is None:
                        raise ConfigError(pf, "needs name and priority")
                    common.write_field(pf, w[1], "net_prio.ifpriomap", f"{name} {prio}")

        rdma = common.get_obj(r, "rdma", path)
        if rdma:
            f = pre + "rdma"
            w = self.where("rdma")
            if w is None:
                raise unsupported("rdma", f)
            from . import v1
            v1.set_rdma(w[1], rdma, f)

        unified = common.get_obj(r, "unified", path)
        if unified:
            f = pre + "unified"
            if not self.unified:
                raise common.not_supported(f, "cgroup v2 is not mounted")
            from . import v2
            v2.set_unified(self.unified, unified, f, set(self.paths))

    def _set_devices(self, config_rules: list | None, field: str) -> None:
        from . import devices
        rules = devices.rules_from_config(config_rules, field)
        all_rules = devices.with_defaults(rules)
        w = self.where("devices")
        if w is None:
            raise common.not_supported(field, "no devices cgroup controller")
        if w[0] == "v1":
            devices.set_v1(w[1], all_rules, len(rules), field)
        else:  # cgroup v2 has no devices files: an eBPF program does it
            from . import bpf
            bpf.set_v2(w[1], all_rules, len(rules), field)

    # --- processes ------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Every process in the container's cgroup, sub-cgroups included."""
        dirs = []
        if self.paths:
            dirs.append(self.paths.get("devices") or self.paths.get("freezer")
                        or self.paths.get("pids") or next(iter(self.paths.values())))
        if self.unified:
            dirs.append(self.unified)
        seen: set[int] = set()
        out: list[int] = []
        for d in dirs:
            for p in common.procs(d):
                if p not in seen:
                    seen.add(p)
                    out.append(p)
        return out

    def freeze(self) -> None:
        w = self.where("freezer")
        if w is None:
            raise RuntimeFailure("cannot freeze the container: no freezer cgroup")
        if w[0] == "v1":
            from . import v1
            v1.freeze(w[1])
        else:
            from . import v2
            v2.freeze(w[1])

    def thaw(self) -> None:
        w = self.where("freezer")
        if w is None:
            raise RuntimeFailure("cannot thaw the container: no freezer cgroup")
        if w[0] == "v1":
            from . import v1
            v1.thaw(w[1])
        else:
            from . import v2
            v2.thaw(w[1])

    def frozen(self) -> bool:
        w = self.where("freezer")
        if w is None:
            return False
        return cgroup_recorded.is_frozen(*w)

    def kill_all(self, sig: int) -> None:
        """Signal every process: SIGKILL through cgroup.kill where the kernel has it, else
        freeze, signal each, thaw (as runc does). A paused container stays paused unless the
        signal is SIGKILL (v1 frozen tasks only die once thawed)."""
        from _signal import SIGKILL  # the signal module imports enum: 3.5 ms
        if sig == SIGKILL and self.unified and os.path.isdir(self.unified):
            from . import v2
            if v2.kill(self.unified):
                w = self.where("freezer")
                if w is not None and w[0] == "v1" and self.frozen():
                    self.thaw()      # v1-frozen tasks only die once thawed
                return
        can_freeze = self.where("freezer") is not None and self.exists()
        was_frozen = can_freeze and self.frozen()
        if can_freeze and not was_frozen:
            try:
                self.freeze()
            except RuntimeFailure:
                pass
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if can_freeze and (not was_frozen or sig == SIGKILL):
                try:
                    self.thaw()
                except RuntimeFailure:
                    pass

    # --- statistics -----------------------------------------------------------------------

    def stats(self) -> dict:
        """The "data" object of `runc events --stats` (runc's types.Stats field names)."""
        from . import v1, v2
        out: dict = {"cpu": {"usage": {}, "throttling": {}}, "cpuset": {}, "memory": {},
                     "pids": {}, "blkio": {}, "hugetlb": {}}
        if "cpuacct" in self.paths:
            v1.stats_cpuacct(self.paths["cpuacct"], out)
        if "cpu" in self.paths:
            v1.stats_cpu(self.paths["cpu"], out)
        elif self.unified:
            v2.stats_cpu(self.unified, out)
        if "cpuset" in self.paths:
            v1.stats_cpuset(self.paths["cpuset"], out)
        for ctrl, f1, f2 in (("memory", v1.stats_memory, v2.stats_memory),
                             ("pids", v1.stats_pids, v2.stats_pids),
                             ("blkio", v1.stats_blkio, v2.stats_io),
                             ("hugetlb", v1.stats_hugetlb, v2.stats_hugetlb)):
            w = self.where(ctrl)
            if w is not None:
                (f1 if w[0] == "v1" else f2)(w[1], out)
            elif ctrl == "pids" and self.unified:
                v2.stats_pids(self.unified, out)
        return _runc_stats(out)

    def oom_events(self) -> int:
        """How many times the OOM killer killed a process of the container."""
        w = self.where("memory")
        if w is None:
            return 0
        if w[0] == "v1":
            from . import v1
            return v1.oom_kills(w[1])
        return common.read_keyed(w[1], "memory.events").get("oom_kill", 0)

    def delegate(self, uid: int, gid: int = -1) -> None:
        """Give the container's cgroup2 directory to uid (runtime-spec "Cgroup ownership":
        only with a new cgroup namespace and a read-write cgroup mount, never where v1 is in
        use; the group stays, as with runc). Creator decides when (create.cgroup_owner)."""
        if self.mode == "v2" and self.unified:
            from . import v2
            try:
                v2.chown(self.unified, uid, gid)
            except OSError as e:
                raise RuntimeFailure(f"cannot give cgroup {self.unified} to uid {uid}: "
                                     f"{e.strerror}") from None


def _nz(d: dict, *keys: str) -> dict:
    """Drop the given keys whose values are zero/empty (Go's omitempty)."""
    return {k: v for k, v in d.items() if k not in keys or v}


def _runc_stats(s: dict) -> dict:
    cpu = s["cpu"]
    usage = cpu.get("usage") or {}
    usage = {"total": usage.get("total", 0), "percpu": usage.get("percpu"),
             "percpu_kernel": usage.get("percpu_kernel"), "percpu_user": usage.get("percpu_user"),
             "kernel": usage.get("kernel", 0), "user": usage.get("user", 0)}
    # Like runc 1.1 (Go's omitempty keeps structs): "usage", "throttling" and the memory
    # entries are always there, their zero scalars are not.
    out_cpu: dict = {
        "usage": _nz(usage, "total", "percpu", "percpu_kernel", "percpu_user"),
        "throttling": _nz(cpu.get("throttling") or {}, "periods", "throttledPeriods",
                          "throttledTime"),
    }
    if cpu.get("psi"):
        out_cpu["psi"] = cpu["psi"]

    cs = s["cpuset"]
    cpuset = {"cpus": cs.get("cpus"), "cpu_exclusive": cs.get("cpu_exclusive", 0),
              "mems": cs.get("mems"), "mem_hardwall": cs.get("mem_hardwall", 0),
              "mem_exclusive": cs.get("mem_exclusive", 0),
              "memory_migrate": cs.get("memory_migrate", 0),
              "memory_spread_page": cs.get("memory_spread_page", 0),
              "memory_spread_slab": cs.get("memory_spread_slab", 0),
              "memory_pressure": cs.get("memory_pressure", 0),
              "sched_load_balance": cs.get("sched_load_balance", 0),
              "sched_relax_domain_level": cs.get("sched_relax_domain_level", 0)}
    cpuset = _nz(cpuset, "cpus", "mems")

    m = s["memory"]
    mem: dict = {}
    if m.get("cache"):
        mem["cache"] = m["cache"]
    for key in ("usage", "swap", "kernel", "kernelTCP"):
        e = m.get(key) or {}
        mem[key] = _nz({"limit": e.get("limit", 0), "usage": e.get("usage", 0),
                        "max": e.get("max", 0), "failcnt": e.get("failcnt", 0)},
                       "usage", "max")
    if m.get("raw"):
        mem["raw"] = m["raw"]
    if m.get("psi"):
        mem["psi"] = m["psi"]

    blkio: dict = {}
    for key in ("ioServiceBytesRecursive", "ioServicedRecursive", "ioQueueRecursive",
                "ioServiceTimeRecursive", "ioWaitTimeRecursive", "ioMergedRecursive",
                "ioTimeRecursive", "sectorsRecursive"):
        entries = s["blkio"].get(key)
        if entries:
            blkio[key] = [_nz(e, "major", "minor", "op", "value") for e in entries]
    if s["blkio"].get("psi"):
        blkio["psi"] = s["blkio"]["psi"]

    huge = {ps: _nz({"usage": h.get("usage", 0), "max": h.get("max", 0),
                     "failcnt": h.get("failcnt", 0)}, "usage", "max")
            for ps, h in s["hugetlb"].items()}
    return {"cpu": out_cpu, "cpuset": cpuset, "memory": mem,
            "pids": _nz(s["pids"], "current", "limit"), "blkio": blkio, "hugetlb": huge,
            "intel_rdt": {}, "network_interfaces": None}
