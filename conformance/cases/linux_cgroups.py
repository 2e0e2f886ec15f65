"""The "linux: cgroups" cases: linux.cgroupsPath and linux.resources (config-linux.md Control
groups)."""
from __future__ import annotations

import os
import uuid

from harness import CGROUP_PARENT, Bundle, T, read, remove_cgroup
from registry import Skip, case, check, eq


Q = "linux: cgroups"


def _cg_values(t: T, resources: dict, files: list[tuple[str, str, str | None]],
               b: Bundle | None = None) -> dict[str, tuple[str, str]]:
    """Create a container with `resources`, read (controller, v1 file, v2 file) from outside."""
    b = b or t.bundle("sleep", "10")
    b.linux["resources"] = resources
    cid = t.create(b)
    pid = t.pids[cid]
    out = {}
    for ctrl, v1, v2 in files:
        ver, path = t.s.cg.file(pid, ctrl, v1, v2)
        out[v1] = (ver, read(path, "<missing>").strip())
    return out


@case(Q, "cgroups.path_absolute", "an absolute cgroupsPath is relative to the cgroup mount point, the same each time",
      "config-linux.md#cgroups-path", "In the case of an absolute path (starting with /), the runtime MUST take the path to be relative to the cgroups mount point. / ... MUST consistently attach to the same place")
def _(t: T):
    path = f"/{CGROUP_PARENT}/abs-{uuid.uuid4().hex[:8]}"
    seen = []
    for _ in range(2):
        b = t.bundle("sleep", "10")
        b.linux["cgroupsPath"] = path
        cid = t.create(b)
        pid = t.pids[cid]
        lines = read(f"/proc/{pid}/cgroup").splitlines()
        mine = [ln.split(":", 2)[2] for ln in lines]
        check(all(p == path for p in mine), f"/proc/{pid}/cgroup: {lines}")
        for r in t.s.cg.roots():
            check(str(pid) in read(os.path.join(r + path, "cgroup.procs"), "").split(),
                  f"pid {pid} not in {r + path}/cgroup.procs")
        seen.append(mine)
        t.delete(cid, force=True)
        t.wait_exit(cid, 5)
    eq(seen[0], seen[1], "the cgroups of two containers with the same cgroupsPath")
    for d in t.s.cg.paths_for(path):
        if os.path.isdir(d):
            remove_cgroup(d)


@case(Q, "cgroups.path_relative", "a relative cgroupsPath is accepted",
      "config-linux.md#cgroups-path", "In the case of a relative path (not starting with /), the runtime MAY interpret the path relative to a runtime-determined location in the cgroups hierarchy.")
def _(t: T):
    rel = f"{CGROUP_PARENT}-rel/{uuid.uuid4().hex[:8]}"
    t.defer(lambda: _remove_rel_parents(t.s.cg.roots(), f"{CGROUP_PARENT}-rel"))
    b = t.bundle("sleep", "10")
    b.linux["cgroupsPath"] = rel
    cid = t.create(b)
    lines = read(f"/proc/{t.pids[cid]}/cgroup").splitlines()
    check(all(ln.split(":", 2)[2].endswith("/" + rel) for ln in lines), f"/proc/<pid>/cgroup: {lines}")
    t.delete(cid, force=True)
    t.wait_exit(cid, 5)
    left = [d for r in t.s.cg.roots() for d in _dirs_ending(r, rel)]
    check(not left, f"the relative cgroup survived delete: {left}")


def _dirs_ending(root: str, rel: str) -> list[str]:
    """Directories under a cgroup root whose path ends with `rel` (where a runtime put it)."""
    out = []
    for d, subdirs, _ in os.walk(root):
        if d.endswith("/" + rel):
            out.append(d)
        subdirs[:] = [s for s in subdirs if s.startswith(CGROUP_PARENT) or "/" + CGROUP_PARENT in d
                      or d.count("/") < root.count("/") + 3]
    return out


def _remove_rel_parents(root_list: list[str], first: str) -> None:
    for r in root_list:
        for d, _, _ in os.walk(r):
            if os.path.basename(d) == first:
                remove_cgroup(d)


@case(Q, "cgroups.memory", "memory limit and reservation are written to the memory controller",
      "config-linux.md#memory", "memory (object, OPTIONAL) represents the cgroup subsystem memory and it's used to set limits on the container's memory usage.")
def _(t: T):
    v = _cg_values(t, {"memory": {"limit": 64 << 20, "reservation": 32 << 20}},
                   [("memory", "memory.limit_in_bytes", "memory.max"),
                    ("memory", "memory.soft_limit_in_bytes", "memory.low")])
    eq(v["memory.limit_in_bytes"][1], str(64 << 20), "memory limit")
    eq(v["memory.soft_limit_in_bytes"][1], str(32 << 20), "memory reservation")


@case(Q, "cgroups.memory_swap", "memory swap (memory+swap) is written",
      "config-linux.md#memory", "swap (int64, OPTIONAL) - sets limit of memory+Swap usage")
def _(t: T):
    v = _cg_values(t, {"memory": {"limit": 64 << 20, "swap": 96 << 20}},
                   [("memory", "memory.memsw.limit_in_bytes", "memory.swap.max")])
    ver, val = v["memory.memsw.limit_in_bytes"]
    if val == "<missing>":
        t.skip("no swap accounting on this machine")
    eq(val, str(96 << 20) if ver == "v1" else str(32 << 20), f"memory+swap ({ver})")


@case(Q, "cgroups.cpu", "cpu shares, quota and period are written",
      "config-linux.md#cpu", "cpu (object, OPTIONAL) represents the cgroup subsystems cpu and cpusets.")
def _(t: T):
    v = _cg_values(t, {"cpu": {"shares": 512, "quota": 50000, "period": 100000}},
                   [("cpu", "cpu.shares", "cpu.weight"), ("cpu", "cpu.cfs_quota_us", "cpu.max"),
                    ("cpu", "cpu.cfs_period_us", "cpu.max")])
    if v["cpu.shares"][0] == "v1":
        eq((v["cpu.shares"][1], v["cpu.cfs_quota_us"][1], v["cpu.cfs_period_us"][1]),
           ("512", "50000", "100000"), "cpu.shares, cpu.cfs_quota_us, cpu.cfs_period_us")
    else:
        eq(v["cpu.cfs_quota_us"][1], "50000 100000", "cpu.max")
        check(v["cpu.shares"][1] not in ("100", "<missing>"), f"cpu.weight {v['cpu.shares'][1]} (shares 512)")


@case(Q, "cgroups.cpuset", "cpuset cpus and mems are written",
      "config-linux.md#cpu", "cpus (string, OPTIONAL) - list of CPUs the container will run on. / mems ... list of memory nodes")
def _(t: T):
    v = _cg_values(t, {"cpu": {"cpus": "0", "mems": "0"}},
                   [("cpuset", "cpuset.cpus", "cpuset.cpus"), ("cpuset", "cpuset.mems", "cpuset.mems")])
    eq((v["cpuset.cpus"][1], v["cpuset.mems"][1]), ("0", "0"), "cpuset.cpus, cpuset.mems")


@case(Q, "cgroups.pids", "the pids limit is written",
      "config-linux.md#pids", "limit (int64, OPTIONAL) - specifies the maximum number of tasks in the cgroup")
def _(t: T):
    v = _cg_values(t, {"pids": {"limit": 42}}, [("pids", "pids.max", "pids.max")])
    eq(v["pids.max"][1], "42", "pids.max")
    v = _cg_values(t, {"pids": {"limit": -1}}, [("pids", "pids.max", "pids.max")])
    eq(v["pids.max"][1], "max", "pids.max for -1")


@case(Q, "cgroups.pids_zero", "a pids limit of 0 is written as 0",
      "config-linux.md#pids", "0 is a valid limit value for the pids cgroup controller from the kernel's perspective and SHOULD be treated as such by runtimes.", level="SHOULD")
def _(t: T):
    v = _cg_values(t, {"pids": {"limit": 0}}, [("pids", "pids.max", "pids.max")])
    eq(v["pids.max"][1], "0", "pids.max")


@case(Q, "cgroups.hugetlb", "hugepage limits are written",
      "config-linux.md#huge-page-limits", "hugepageLimits (array of objects, OPTIONAL) represents the hugetlb controller which allows to limit the HugeTLB reservations (if supported) or usage (page fault).")
def _(t: T):
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        t.skip("no 2MB huge pages on this machine")
    v = _cg_values(t, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]},
                   [("hugetlb", "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max")])
    eq(v["hugetlb.2MB.limit_in_bytes"][1], str(4 << 20), "hugetlb 2MB limit")


@case(Q, "cgroups.blkio", "the blkio weight is written",
      "config-linux.md#block-io", "blockIO (object, OPTIONAL) represents the cgroup subsystem blkio which implements the block IO controller.")
def _(t: T):
    probe = t.bundle("sleep", "10")
    cid = t.create(probe)
    try:
        ver, path = t.s.cg.file(t.pids[cid], "blkio", "blkio.weight", "io.weight")
    except Skip:
        ver, path = "", ""
    if not path or not os.path.exists(path):
        try:
            ver, path = t.s.cg.file(t.pids[cid], "io", "blkio.weight", "io.weight")
        except Skip:
            path = ""
    t.delete(cid, force=True)
    t.wait_exit(cid, 5)
    if not path or not os.path.exists(path):
        t.skip("no blkio/io weight file on this machine (no CFQ/BFQ weight support)")
    v = _cg_values(t, {"blockIO": {"weight": 300}}, [("blkio", "blkio.weight", "io.weight")])
    check(v["blkio.weight"][1] in ("300", "default 300") or v["blkio.weight"][1].endswith(" 300"),
          f"blkio weight {v['blkio.weight'][1]!r}")


@case(Q, "cgroups.network", "net_cls classID is written",
      "config-linux.md#network", "network (object, OPTIONAL) represents the cgroup subsystems net_cls and net_prio.")
def _(t: T):
    if "net_cls" not in t.s.cg.v1:
        t.skip("no net_cls controller on this machine")
    v = _cg_values(t, {"network": {"classID": 0x100001}}, [("net_cls", "net_cls.classid", None)])
    eq(v["net_cls.classid"][1], str(0x100001), "net_cls.classid")


@case(Q, "cgroups.unified", "unified keys are written to the v2 cgroup",
      "config-linux.md#unified", "Each key in the map refers to a file in the cgroup unified hierarchy. ... Configuration unknown to the runtime MUST still be written to the relevant file.")
def _(t: T):
    cg = t.s.cg
    if cg.pure_v2 and "pids" in cg.v2_controllers:
        key, val, want = "pids.max", "77", "77"
    elif cg.v2 and "hugetlb" in cg.v2_controllers and os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        key, val, want = "hugetlb.2MB.max", str(6 << 20), str(6 << 20)
    else:
        t.skip("no controller in the unified hierarchy to write to")
    b = t.bundle("sleep", "10")
    b.linux["resources"] = {"unified": {key: val}}
    cid = t.create(b)
    line = [ln for ln in read(f"/proc/{t.pids[cid]}/cgroup").splitlines() if ln.startswith("0::")]
    check(bool(line), "the container is in no v2 cgroup")
    eq(read(os.path.join(cg.v2 + line[0][3:], key), "<missing>").strip(), want, key)


@case(Q, "cgroups.unified_unknown_controller", "a unified key of a missing controller is an error",
      "config-linux.md#unified", "The runtime MUST generate an error when the configuration refers to a cgroup controller that is not present or that cannot be enabled.")
def _(t: T):
    if not t.s.cg.v2:
        t.skip("no cgroup v2 hierarchy")
    b = t.bundle("true")
    b.linux["resources"] = {"unified": {"nosuchcontroller.max": "1"}}
    t.create_fails(b, "the controller nosuchcontroller does not exist")
