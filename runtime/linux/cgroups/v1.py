"""cgroup v1 controller files: resource setters, freezer and statistics (runc's fs driver)."""
from __future__ import annotations

import errno
import os
import time

from ...errors import ConfigError, RuntimeFailure
from . import common
from .common import exists, get_bool, get_int, get_list, read_uint, write_field


# --- memory -------------------------------------------------------------------------------------

def _set_limit(d: str, field: str, val: int) -> None:
    try:
        common.write(d, "memory.limit_in_bytes", str(val))
    except OSError as e:
        if e.errno == errno.EBUSY:
            usage = read_uint(d, "memory.usage_in_bytes")
            peak = read_uint(d, "memory.max_usage_in_bytes")
            raise ConfigError(f"{field}.limit", f"unable to set memory limit to {val} (current "
                                                f"usage: {usage}, peak usage: {peak})") from None
        write_field(f"{field}.limit", d, "memory.limit_in_bytes", str(val))


def _set_swap(d: str, field: str, val: int) -> None:
    if not exists(d, "memory.memsw.limit_in_bytes"):
        if val == -1:
            return
        raise common.not_supported(f"{field}.swap", "swap accounting is off: no "
                                                    "memory.memsw.limit_in_bytes")
    write_field(f"{field}.swap", d, "memory.memsw.limit_in_bytes", str(val))


def check_memory(usage: int, limit: int | None, swap: int | None, field: str) -> None:
    if swap is not None and swap > 0 and swap <= usage:
        raise ConfigError(f"{field}.swap", f"rejecting memory+swap limit {swap} <= usage {usage}")
    if limit is not None and limit > 0 and limit <= usage:
        raise ConfigError(f"{field}.limit", f"rejecting memory limit {limit} <= usage {usage}")


def set_memory(d: str, m: dict, field: str, update: bool) -> None:
    limit = get_int(m, "limit", field) or None
    swap = get_int(m, "swap", field) or None
    reservation = get_int(m, "reservation", field) or None
    swappiness = get_int(m, "swappiness", field)
    if swappiness in (-1, common.MAX_UINT64):
        swappiness = None
    if swappiness is not None and not 0 <= swappiness <= 100:
        raise ConfigError(f"{field}.swappiness", f"must be between 0 and 100, not {swappiness}")
    if get_bool(m, "checkBeforeUpdate", field):
        check_memory(read_uint(d, "memory.usage_in_bytes"), limit, swap, field)

    if limit == -1 and swap is None and exists(d, "memory.memsw.limit_in_bytes"):
        swap = -1
    if limit is not None and swap is not None:
        cur = read_uint(d, "memory.limit_in_bytes")
        # raising: memsw first (memory.limit must stay <= memsw); lowering: memory first
        if swap == -1 or cur < swap:
            _set_swap(d, field, swap)
            _set_limit(d, field, limit)
        else:
            _set_limit(d, field, limit)
            _set_swap(d, field, swap)
    elif limit is not None:
        _set_limit(d, field, limit)
    elif swap is not None:
        _set_swap(d, field, swap)

    if reservation is not None:
        write_field(f"{field}.reservation", d, "memory.soft_limit_in_bytes", str(reservation))
    kernel = get_int(m, "kernel", field)
    if kernel and kernel != -1:  # deprecated: newer kernels ignore it or refuse it; never fatal
        try:
            common.write(d, "memory.kmem.limit_in_bytes", str(kernel))
            now = read_uint(d, "memory.kmem.limit_in_bytes", -1)
        except OSError as e:
            now = e.strerror or str(e)
        if now != kernel - kernel % os.sysconf("SC_PAGE_SIZE"):  # 5.16+: taken, limits nothing
            common.ignored(f"{field}.kernel", f"this kernel does not limit kernel memory "
                                              f"(memory.kmem.limit_in_bytes: {now})")
    tcp = get_int(m, "kernelTCP", field)
    if tcp and tcp != -1:
        if exists(d, "memory.kmem.tcp.limit_in_bytes"):
            write_field(f"{field}.kernelTCP", d, "memory.kmem.tcp.limit_in_bytes", str(tcp))
        else:
            common.ignored(f"{field}.kernelTCP", "no memory.kmem.tcp.limit_in_bytes")
    if swappiness is not None:
        write_field(f"{field}.swappiness", d, "memory.swappiness", str(swappiness))
    oom = get_bool(m, "disableOOMKiller", field)
    if oom or (oom is False and update):
        write_field(f"{field}.disableOOMKiller", d, "memory.oom_control", "1" if oom else "0")
    hier = get_bool(m, "useHierarchy", field)
    if hier is not None and read_uint(d, "memory.use_hierarchy", -1) != int(hier):
        write_field(f"{field}.useHierarchy", d, "memory.use_hierarchy", "1" if hier else "0")


# --- cpu ----------------------------------------------------------------------------------------

def set_cpu(d: str, c: dict, field: str, parents: list[str]) -> None:
    """cpu controller fields; `parents` are the cpu cgroup dirs created above `d` (top first),
    which get the realtime budget too when the kernel asks for it."""
    shares = get_int(c, "shares", field, lo=0)
    if shares:
        write_field(f"{field}.shares", d, "cpu.shares", str(shares))
        got = read_uint(d, "cpu.shares")
        if shares > got:
            raise ConfigError(f"{field}.shares", f"the maximum allowed cpu-shares is {got}")
        if shares < got:
            raise ConfigError(f"{field}.shares", f"the minimum allowed cpu-shares is {got}")
    period = get_int(c, "period", field, lo=0)
    quota = get_int(c, "quota", field)
    burst = get_int(c, "burst", field, lo=0)
    pending_period = pending_burst = None
    if period:
        try:
            common.write(d, "cpu.cfs_period_us", str(period))
        except OSError as e:
            # a shorter period can be refused until the quota is lowered: retry after it
            if e.errno != errno.EINVAL or not quota:
                write_field(f"{field}.period", d, "cpu.cfs_period_us", str(period))
            pending_period = period
    if burst is not None:
        if not exists(d, "cpu.cfs_burst_us"):
            raise common.not_supported(f"{field}.burst", "no cpu.cfs_burst_us")
        try:
            common.write(d, "cpu.cfs_burst_us", str(burst))
        except OSError as e:
            if e.errno != errno.EINVAL or not quota:
                write_field(f"{field}.burst", d, "cpu.cfs_burst_us", str(burst))
            pending_burst = burst
    if quota:
        write_field(f"{field}.quota", d, "cpu.cfs_quota_us", str(quota))
        if pending_period is not None:
            write_field(f"{field}.period", d, "cpu.cfs_period_us", str(pending_period))
        if pending_burst is not None:
            write_field(f"{field}.burst", d, "cpu.cfs_burst_us", str(pending_burst))
    idle = get_int(c, "idle", field)
    if idle is not None:
        if exists(d, "cpu.idle"):
            write_field(f"{field}.idle", d, "cpu.idle", str(idle))
        elif idle != 0:
            raise common.not_supported(f"{field}.idle", "no cpu.idle")
    set_rt(d, c, field, parents)


def set_rt(d: str, c: dict, field: str, parents: list[str]) -> None:
    rt_period = get_int(c, "realtimePeriod", field, lo=0)
    rt_runtime = get_int(c, "realtimeRuntime", field)
    if not rt_period and not rt_runtime:
        return
    if not exists(d, "cpu.rt_runtime_us"):
        f = f"{field}.realtimeRuntime" if rt_runtime else f"{field}.realtimePeriod"
        raise common.not_supported(f, "the kernel has no CONFIG_RT_GROUP_SCHED")
    pending = None
    if rt_period:
        try:
            common.write(d, "cpu.rt_period_us", str(rt_period))
        except OSError as e:
            if e.errno != errno.EINVAL or not rt_runtime:
                write_field(f"{field}.realtimePeriod", d, "cpu.rt_period_us", str(rt_period))
            pending = rt_period
    if rt_runtime:
        try:
            common.write(d, "cpu.rt_runtime_us", str(rt_runtime))
        except OSError as e:
            if e.errno != errno.EINVAL or not parents:
                write_field(f"{field}.realtimeRuntime", d, "cpu.rt_runtime_us", str(rt_runtime))
            # The cgroups runp made above the container start with no realtime budget:
            # give them the container's, top down, then retry.
            for p in parents:
                if read_uint(p, "cpu.rt_runtime_us") < rt_runtime:
                    write_field(f"{field}.realtimeRuntime", p, "cpu.rt_runtime_us",
                                str(rt_runtime))
            write_field(f"{field}.realtimeRuntime", d, "cpu.rt_runtime_us", str(rt_runtime))
        if pending is not None:
            write_field(f"{field}.realtimePeriod", d, "cpu.rt_period_us", str(pending))


def set_cpuset(d: str, cpus: str | None, mems: str | None, field: str) -> None:
    if cpus:
        write_field(f"{field}.cpus", d, "cpuset.cpus", cpus)
    if mems:
        write_field(f"{field}.mems", d, "cpuset.mems", mems)


def pids_value(limit: int) -> str:
    return str(limit) if limit >= 0 else "max"


def set_blkio(d: str, b: dict, field: str) -> None:
    weight = get_int(b, "weight", field, lo=0, hi=65535)
    if weight:
        name = "blkio.weight" if exists(d, "blkio.weight") else "blkio.bfq.weight"
        if not exists(d, name):
            raise common.not_supported(f"{field}.weight", "no blkio.weight or blkio.bfq.weight")
        write_field(f"{field}.weight", d, name, str(weight))
    leaf = get_int(b, "leafWeight", field, lo=0, hi=65535)
    if leaf:
        if not exists(d, "blkio.leaf_weight"):
            raise common.not_supported(f"{field}.leafWeight", "no blkio.leaf_weight")
        write_field(f"{field}.leafWeight", d, "blkio.leaf_weight", str(leaf))
    wd_name = "blkio.weight_device" if exists(d, "blkio.weight") else "blkio.bfq.weight_device"
    for i, wd in enumerate(get_list(b, "weightDevice", field) or ()):
        f = f"{field}.weightDevice[{i}]"
        maj, mnr = device_numbers(wd, f)
        w = get_int(wd, "weight", f, lo=0, hi=65535)
        lw = get_int(wd, "leafWeight", f, lo=0, hi=65535)
        if w:
            if not exists(d, wd_name):
                raise common.not_supported(f"{f}.weight", "no blkio.weight_device")
            write_field(f"{f}.weight", d, wd_name, f"{maj}:{mnr} {w}")
        if lw:
            if not exists(d, "blkio.leaf_weight_device"):
                raise common.not_supported(f"{f}.leafWeight", "no blkio.leaf_weight_device")
            write_field(f"{f}.leafWeight", d, "blkio.leaf_weight_device", f"{maj}:{mnr} {lw}")
    for key, name in THROTTLE_V1:
        for i, td in enumerate(get_list(b, key, field) or ()):
            f = f"{field}.{key}[{i}]"
            maj, mnr = device_numbers(td, f)
            rate = get_int(td, "rate", f, lo=0)
            if rate is None:
                raise ConfigError(f"{f}.rate", "is required")
            write_field(f, d, name, f"{maj}:{mnr} {rate}")


THROTTLE_V1 = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
               ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
               ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
               ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"))


def device_numbers(obj: object, field: str) -> tuple[int, int]:
    if not isinstance(obj, dict):
        raise ConfigError(field, "must be an object")
    maj = get_int(obj, "major", field, lo=0)
    mnr = get_int(obj, "minor", field, lo=0)
    if maj is None:
        raise ConfigError(f"{field}.major", "is required")
    if mnr is None:
        raise ConfigError(f"{field}.minor", "is required")
    return maj, mnr


def set_hugetlb(d: str, limits: list, field: str, v2: bool) -> None:
    sizes = common.hugepage_sizes()
    suffix = ".max" if v2 else ".limit_in_bytes"
    skip_rsvd = False
    for i, h in enumerate(limits):
        f = f"{field}[{i}]"
        if not isinstance(h, dict):
            raise ConfigError(f, "must be an object")
        ps = common.get_str(h, "pageSize", f)
        if not ps:
            raise ConfigError(f"{f}.pageSize", "is required")
        if ps not in sizes:
            raise ConfigError(f"{f}.pageSize", f"unknown huge page size {ps!r} (this host has: "
                                               f"{', '.join(sizes) or 'none'})")
        limit = get_int(h, "limit", f, lo=0)
        if limit is None:
            raise ConfigError(f"{f}.limit", "is required")
        name = f"hugetlb.{ps}{suffix}"
        if not exists(d, name):
            raise common.not_supported(f"{f}", f"no {name}")
        write_field(f"{f}.limit", d, name, str(limit))
        if not skip_rsvd:
            rsvd = f"hugetlb.{ps}.rsvd{suffix}"
            if exists(d, rsvd):
                write_field(f"{f}.limit", d, rsvd, str(limit))
            else:
                skip_rsvd = True


def set_rdma(d: str, rdma: dict, field: str) -> None:
    for dev, lim in rdma.items():
        f = f"{field}.{dev}"
        if not isinstance(lim, dict):
            raise ConfigError(f, "must be an object")
        h = get_int(lim, "hcaHandles", f, lo=0)
        o = get_int(lim, "hcaObjects", f, lo=0)
        if h is None and o is None:
            raise ConfigError(f, "needs hcaHandles or hcaObjects")
        line = dev + (f" hca_handle={h}" if h is not None else "") + \
            (f" hca_object={o}" if o is not None else "")
        write_field(f, d, "rdma.max", line)


# --- freezer ------------------------------------------------------------------------------------

def freeze(d: str) -> None:
    """runc's loop: write FROZEN until freezer.state says FROZEN; thaw and retry now and then
    (a task stuck in vfork can block freezing forever)."""
    try:
        for i in range(1000):
            if i % 50 == 49:
                common.write(d, "freezer.state", "THAWED")
                time.sleep(0.01)
            common.write(d, "freezer.state", "FROZEN")
            if i % 25 == 24:
                time.sleep(0.00001)
            state = common.read(d, "freezer.state").strip()
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise RuntimeFailure(f"unexpected freezer state {state} while freezing {d}")
    except OSError as e:
        _thaw_quietly(d)
        raise RuntimeFailure(f"freezing {d}: {e.strerror}") from None
    _thaw_quietly(d)
    raise RuntimeFailure(f"unable to freeze {d}")


def _thaw_quietly(d: str) -> None:
    try:
        common.write(d, "freezer.state", "THAWED")
    except OSError:
        pass


def thaw(d: str) -> None:
    try:
        common.write(d, "freezer.state", "THAWED")
    except OSError as e:
        raise RuntimeFailure(f"thawing {d}: {e.strerror}") from None


# --- statistics ---------------------------------------------------------------------------------

def _memory_entry(d: str, prefix: str) -> dict | None:
    if not exists(d, prefix + ".usage_in_bytes"):
        return None
    return {"limit": read_uint(d, prefix + ".limit_in_bytes"),
            "usage": read_uint(d, prefix + ".usage_in_bytes"),
            "max": read_uint(d, prefix + ".max_usage_in_bytes"),
            "failcnt": read_uint(d, prefix + ".failcnt")}


def stats_memory(d: str, out: dict) -> None:
    raw = common.read_keyed(d, "memory.stat")
    mem = out["memory"]
    mem["cache"] = raw.get("cache", 0)
    for key, prefix in (("usage", "memory"), ("swap", "memory.memsw"), ("kernel", "memory.kmem"),
                        ("kernelTCP", "memory.kmem.tcp")):
        e = _memory_entry(d, prefix)
        if e is not None:
            mem[key] = e
    mem["raw"] = raw


def stats_cpuacct(d: str, out: dict) -> None:
    usage = out["cpu"]["usage"]
    usage["total"] = read_uint(d, "cpuacct.usage")
    text = common.try_read(d, "cpuacct.usage_percpu")
    if text is not None:
        usage["percpu"] = [int(x) for x in text.split()]
    text = common.try_read(d, "cpuacct.usage_all")
    if text is not None:
        lines = text.splitlines()[1:]
        user, kernel = [], []
        for line in lines:
            f = line.split()
            if len(f) >= 3:
                user.append(int(f[1]))
                kernel.append(int(f[2]))
        usage["percpu_kernel"] = kernel
        usage["percpu_user"] = user
    st = common.read_keyed(d, "cpuacct.stat")
    ticks = os.sysconf("SC_CLK_TCK") or 100
    usage["user"] = st.get("user", 0) * 1_000_000_000 // ticks
    usage["kernel"] = st.get("system", 0) * 1_000_000_000 // ticks


def stats_cpu(d: str, out: dict) -> None:
    st = common.read_keyed(d, "cpu.stat")
    thr = out["cpu"]["throttling"]
    thr["periods"] = st.get("nr_periods", 0)
    thr["throttledPeriods"] = st.get("nr_throttled", 0)
    thr["throttledTime"] = st.get("throttled_time", 0)


def _cpu_list(text: str | None) -> list[int]:
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def stats_cpuset(d: str, out: dict) -> None:
    cs = out["cpuset"]
    cs["cpus"] = _cpu_list(common.try_read(d, "cpuset.cpus"))
    cs["mems"] = _cpu_list(common.try_read(d, "cpuset.mems"))
    for key in ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate",
                "memory_spread_page", "memory_spread_slab", "memory_pressure",
                "sched_load_balance"):
        cs[key] = read_uint(d, "cpuset." + key)
    text = common.try_read(d, "cpuset.sched_relax_domain_level")
    cs["sched_relax_domain_level"] = int(text) if text and text.strip() else 0


def stats_pids(d: str, out: dict) -> None:
    out["pids"]["current"] = read_uint(d, "pids.current")
    limit = read_uint(d, "pids.max")
    out["pids"]["limit"] = 0 if limit == common.MAX_UINT64 else limit


def _blkio_entries(d: str, name: str) -> list[dict] | None:
    text = common.try_read(d, name)
    if text is None:
        return None
    out = []
    for line in text.splitlines():
        f = line.replace(":", " ").split()
        if len(f) < 3:
            continue
        e = {"major": int(f[0]), "minor": int(f[1]), "op": f[2] if len(f) == 4 else "",
             "value": int(f[-1])}
        out.append(e)
    return out


_BLKIO_GROUPS = (
    (("blkio.bfq.sectors_recursive", "sectorsRecursive"),
     ("blkio.bfq.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.bfq.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.bfq.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.bfq.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.bfq.time_recursive", "ioTimeRecursive"),
     ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.sectors_recursive", "sectorsRecursive"),
     ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.time_recursive", "ioTimeRecursive"),
     ("blkio.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive")),
)


def stats_blkio(d: str, out: dict) -> None:
    """The first group of files that all exist wins, in runc's order of preference."""
    for group in _BLKIO_GROUPS:
        got = {}
        for name, key in group:
            entries = _blkio_entries(d, name)
            if entries is None:
                break
            got[key] = entries
        else:
            out["blkio"].update(got)
            return


def stats_hugetlb(d: str, out: dict) -> None:
    rsvd = ".rsvd"
    for ps in common.hugepage_sizes():
        prefix = f"hugetlb.{ps}"
        if rsvd and not exists(d, prefix + rsvd + ".usage_in_bytes"):
            rsvd = ""
        if not exists(d, prefix + rsvd + ".usage_in_bytes"):
            continue
        out["hugetlb"][ps] = {
            "usage": read_uint(d, prefix + rsvd + ".usage_in_bytes"),
            "max": read_uint(d, prefix + rsvd + ".max_usage_in_bytes"),
            "failcnt": read_uint(d, prefix + rsvd + ".failcnt"),
        }


def oom_kills(d: str) -> int:
    return common.read_keyed(d, "memory.oom_control").get("oom_kill", 0)
