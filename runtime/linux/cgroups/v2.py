"""cgroup v2 files: controller enabling, resource setters (with runc's v1-to-v2 conversions),
freezer and statistics."""
from __future__ import annotations

import errno
import math
import os
import time

from ...errors import ConfigError, RuntimeFailure
from . import common
from .common import controllers
from .common import exists, get_bool, get_int, get_list, read_uint, write_field


# --- conversions (runc's libcontainer/cgroups/utils.go) -----------------------------------------

def cpu_shares_to_weight(shares: int) -> int:
    if shares == 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    exponent = (lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0
    return int(math.ceil(10 ** exponent))


def blkio_weight_to_io_weight(weight: int) -> int:
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def memory_swap_to_v2(swap: int, memory: int) -> int:
    """memory+swap (the spec's, v1's) to swap alone (v2's); raises ValueError."""
    if memory == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if memory == -1:
        return swap
    if memory == 0:
        raise ValueError("unable to set swap limit without memory limit")
    if memory < 0:
        raise ValueError(f"invalid memory value: {memory}")
    if swap < memory:
        raise ValueError("memory+swap limit should be >= memory limit")
    return swap - memory


def _num(v: int) -> str:
    return "max" if v == -1 else str(v)


# --- memory -------------------------------------------------------------------------------------

def set_memory(d: str, m: dict, field: str, update: bool) -> None:
    limit = get_int(m, "limit", field) or None
    swap = get_int(m, "swap", field) or None
    reservation = get_int(m, "reservation", field) or None
    swappiness = get_int(m, "swappiness", field)
    if swappiness is not None and swappiness not in (-1, common.MAX_UINT64):
        raise common.not_supported(f"{field}.swappiness", "cgroup v2 has no memory.swappiness")
    if get_bool(m, "disableOOMKiller", field):
        raise common.not_supported(f"{field}.disableOOMKiller",
                                   "cgroup v2 cannot disable the OOM killer")
    if get_bool(m, "useHierarchy", field) is False:
        raise common.not_supported(f"{field}.useHierarchy",
                                   "cgroup v2 memory accounting is always hierarchical")
    for key in ("kernel", "kernelTCP"):  # deprecated, no v2 equivalent: ignored, as runc does
        if get_int(m, key, field) not in (None, 0, -1):
            common.ignored(f"{field}.{key}", "cgroup v2 has no kernel memory limit")
    if limit is None and swap is None and reservation is None:
        return
    if not exists(d, "memory.max"):
        f = f"{field}.limit" if limit else (f"{field}.swap" if swap else f"{field}.reservation")
        raise common.not_supported(f, "the memory controller is not enabled for this cgroup")
    if get_bool(m, "checkBeforeUpdate", field):
        from .v1 import check_memory
        check_memory(read_uint(d, "memory.current"), limit, swap, field)
    if swap is not None:
        mem = limit
        if mem is None:
            cur = read_uint(d, "memory.max")
            mem = -1 if cur == common.MAX_UINT64 else cur
        try:
            sw = memory_swap_to_v2(swap, mem)
        except ValueError as e:
            raise ConfigError(f"{field}.swap", str(e)) from None
        val = "0" if sw == 0 else _num(sw)
        if exists(d, "memory.swap.max"):
            write_field(f"{field}.swap", d, "memory.swap.max", val)
        elif val not in ("max", "0"):
            raise common.not_supported(f"{field}.swap", "swap accounting is off: no "
                                                        "memory.swap.max")
    elif limit == -1 and exists(d, "memory.swap.max"):
        write_field(f"{field}.swap", d, "memory.swap.max", "max")
    if limit is not None:
        write_field(f"{field}.limit", d, "memory.max", _num(limit))
    if reservation is not None:
        write_field(f"{field}.reservation", d, "memory.low", _num(reservation))


# --- cpu ----------------------------------------------------------------------------------------

def set_cpu(d: str, c: dict, field: str, update: bool) -> None:
    shares = get_int(c, "shares", field, lo=0)
    quota = get_int(c, "quota", field)
    period = get_int(c, "period", field, lo=0)
    burst = get_int(c, "burst", field, lo=0)
    idle = get_int(c, "idle", field)
    for key in ("realtimeRuntime", "realtimePeriod"):
        if get_int(c, key, field):
            raise common.not_supported(f"{field}.{key}",
                                       "cgroup v2 has no realtime group scheduling")
    if not (shares or quota or period or burst is not None or idle is not None):
        return
    if not exists(d, "cpu.max"):
        f = next(f"{field}.{k}" for k in ("shares", "quota", "period", "burst", "idle")
                 if c.get(k) is not None)
        raise common.not_supported(f, "the cpu controller is not enabled for this cgroup")
    if idle is not None:
        write_field(f"{field}.idle", d, "cpu.idle", str(idle))
    if shares:
        write_field(f"{field}.shares", d, "cpu.weight", str(cpu_shares_to_weight(shares)))
    pending_burst = None
    if burst is not None:
        if not exists(d, "cpu.max.burst"):
            raise common.not_supported(f"{field}.burst", "no cpu.max.burst")
        try:
            common.write(d, "cpu.max.burst", str(burst))
        except OSError as e:
            if e.errno != errno.EINVAL or not quota:
                write_field(f"{field}.burst", d, "cpu.max.burst", str(burst))
            pending_burst = burst
    if quota or period:
        cur_q, _, cur_p = (common.try_read(d, "cpu.max") or "max 100000").strip().partition(" ")
        if not quota:       # only the period: keep the current quota
            q = cur_q if update else "max"
        else:
            q = "max" if quota < 0 else str(quota)
        if not period:
            p = cur_p if update and cur_p else "100000"
        else:
            p = str(period)
        write_field(f"{field}.quota" if quota else f"{field}.period", d, "cpu.max", f"{q} {p}")
        if pending_burst is not None:
            write_field(f"{field}.burst", d, "cpu.max.burst", str(pending_burst))


# --- io -----------------------------------------------------------------------------------------

THROTTLE_V2 = (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
               ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"))


def set_io(d: str, b: dict, field: str) -> None:
    from .v1 import device_numbers
    weight = get_int(b, "weight", field, lo=0, hi=65535)
    if get_int(b, "leafWeight", field):
        raise common.not_supported(f"{field}.leafWeight", "cgroup v2 has no leaf weights")
    wds = get_list(b, "weightDevice", field) or []
    throttles = [(k, get_list(b, k, field) or []) for k, _ in THROTTLE_V2]
    if not weight and not wds and not any(t for _, t in throttles):
        return
    if not exists(d, "io.stat"):
        raise common.not_supported(field, "the io controller is not enabled for this cgroup")
    bfq = exists(d, "io.bfq.weight")
    if weight:
        if bfq:
            write_field(f"{field}.weight", d, "io.bfq.weight", str(weight))
        elif exists(d, "io.weight"):
            write_field(f"{field}.weight", d, "io.weight",
                        str(blkio_weight_to_io_weight(weight)))
        else:
            raise common.not_supported(f"{field}.weight", "no io.weight or io.bfq.weight")
    bfq_dev = bfq and (common.try_read(d, "io.bfq.weight") or "").startswith("default")
    for i, wd in enumerate(wds):
        f = f"{field}.weightDevice[{i}]"
        maj, mnr = device_numbers(wd, f)
        if get_int(wd, "leafWeight", f):
            raise common.not_supported(f"{f}.leafWeight", "cgroup v2 has no leaf weights")
        w = get_int(wd, "weight", f, lo=0, hi=65535)
        if not w:
            continue
        if bfq_dev:
            write_field(f"{f}.weight", d, "io.bfq.weight", f"{maj}:{mnr} {w}")
        elif exists(d, "io.weight"):
            write_field(f"{f}.weight", d, "io.weight",
                        f"{maj}:{mnr} {blkio_weight_to_io_weight(w)}")
        else:
            raise common.not_supported(f"{f}.weight", "no per-device io.weight")
    for (key, op), (_, entries) in zip(THROTTLE_V2, throttles):
        for i, td in enumerate(entries):
            f = f"{field}.{key}[{i}]"
            maj, mnr = device_numbers(td, f)
            rate = get_int(td, "rate", f, lo=0)
            if rate is None:
                raise ConfigError(f"{f}.rate", "is required")
            if not exists(d, "io.max"):
                raise common.not_supported(f, "no io.max")
            write_field(f, d, "io.max", f"{maj}:{mnr} {op}={rate or 'max'}")


# --- unified ------------------------------------------------------------------------------------

def set_unified(d: str, unified: dict, field: str, v1_controllers: set[str]) -> None:
    avail = controllers(d)
    for key, val in unified.items():
        f = f"{field}[{key!r}]".replace("'", '"')
        if not isinstance(val, str):
            raise ConfigError(f, "must be a string")
        if "/" in key or key in ("", ".", ".."):
            raise ConfigError(f, "must be a file name (no slashes)")
        ctrl, dot, _ = key.partition(".")
        if not dot:
            raise ConfigError(f, "must be in the form CONTROLLER.PARAMETER")
        if ctrl != "cgroup" and ctrl not in avail and not exists(d, key):
            if ctrl in v1_controllers:
                raise common.not_supported(f, f"the {ctrl} controller is bound to cgroup v1")
            raise common.not_supported(f, f"the {ctrl} controller is not available")
        # one write per line, as runc does (io.max, rdma.max take one device per write)
        for line in val.split("\n") if "\n" in val else [val]:
            if line or "\n" not in val:
                write_field(f, d, key, line)


# --- freezer ------------------------------------------------------------------------------------

def freeze(d: str) -> None:
    try:
        common.write(d, "cgroup.freeze", "1")
    except FileNotFoundError:
        raise RuntimeFailure(f"cannot freeze {d}: no cgroup.freeze (kernel older than 5.2)") \
            from None
    except OSError as e:
        raise RuntimeFailure(f"freezing {d}: {e.strerror}") from None
    for _ in range(1000):
        events = common.read_keyed(d, "cgroup.events")
        if events.get("frozen") == 1:
            return
        if not events:
            break
        time.sleep(0.01)
    try:
        common.write(d, "cgroup.freeze", "0")
    except OSError:
        pass
    raise RuntimeFailure(f"timeout waiting for {d} to freeze")


def thaw(d: str) -> None:
    try:
        common.write(d, "cgroup.freeze", "0")
    except FileNotFoundError:
        return
    except OSError as e:
        raise RuntimeFailure(f"thawing {d}: {e.strerror}") from None


def kill(d: str) -> bool:
    """cgroup.kill (Linux 5.14): SIGKILL everything below d. False when not available."""
    try:
        common.write(d, "cgroup.kill", "1")
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno == errno.ENODEV:
            return True
        raise RuntimeFailure(f"killing the processes of {d}: {e.strerror}") from None


# --- statistics ---------------------------------------------------------------------------------

def stats_cpu(d: str, out: dict) -> None:
    st = common.read_keyed(d, "cpu.stat")
    usage = out["cpu"]["usage"]
    usage["total"] = st.get("usage_usec", 0) * 1000
    usage["user"] = st.get("user_usec", 0) * 1000
    usage["kernel"] = st.get("system_usec", 0) * 1000
    thr = out["cpu"]["throttling"]
    thr["periods"] = st.get("nr_periods", 0)
    thr["throttledPeriods"] = st.get("nr_throttled", 0)
    thr["throttledTime"] = st.get("throttled_usec", 0) * 1000
    psi = common.read_psi(d, "cpu.pressure")
    if psi is not None:
        out["cpu"]["psi"] = psi


def _mem_entry(d: str, name: str) -> dict | None:
    if not exists(d, name + ".current"):
        return None
    return {"limit": read_uint(d, name + ".max"), "usage": read_uint(d, name + ".current"),
            "max": read_uint(d, name + ".peak"), "failcnt": 0}


def stats_memory(d: str, out: dict) -> None:
    raw = common.read_keyed(d, "memory.stat")
    mem = out["memory"]
    mem["cache"] = raw.get("file", 0)
    mem["raw"] = raw
    usage = _mem_entry(d, "memory")
    if usage is not None:
        usage["failcnt"] = common.read_keyed(d, "memory.events").get("max", 0)
        mem["usage"] = usage
        swap = _mem_entry(d, "memory.swap")
        if swap is not None:
            swap["usage"] += usage["usage"]
            if swap["limit"] != common.MAX_UINT64:
                swap["limit"] = min(swap["limit"] + usage["limit"], common.MAX_UINT64)
            swap["max"] = 0
            swap["failcnt"] = 0
            mem["swap"] = swap
    psi = common.read_psi(d, "memory.pressure")
    if psi is not None:
        mem["psi"] = psi


def stats_pids(d: str, out: dict) -> None:
    if exists(d, "pids.current"):
        out["pids"]["current"] = read_uint(d, "pids.current")
        limit = read_uint(d, "pids.max")
        out["pids"]["limit"] = 0 if limit == common.MAX_UINT64 else limit
    else:
        out["pids"]["current"] = len(common.procs(d, recursive=False))


def stats_io(d: str, out: dict) -> None:
    text = common.try_read(d, "io.stat")
    if text is not None:
        tables: dict[str, list] = {}
        ops = {"rbytes": ("ioServiceBytesRecursive", "Read"),
               "wbytes": ("ioServiceBytesRecursive", "Write"),
               "rios": ("ioServicedRecursive", "Read"),
               "wios": ("ioServicedRecursive", "Write")}
        for line in text.splitlines():
            f = line.split()
            if len(f) < 2 or ":" not in f[0]:
                continue
            maj, _, mnr = f[0].partition(":")
            for item in f[1:]:
                k, _, v = item.partition("=")
                if k in ops:
                    table, op = ops[k]
                    tables.setdefault(table, []).append(
                        {"major": int(maj), "minor": int(mnr), "op": op, "value": int(v)})
        out["blkio"].update(tables)
    psi = common.read_psi(d, "io.pressure")
    if psi is not None:
        out["blkio"]["psi"] = psi


def stats_hugetlb(d: str, out: dict) -> None:
    for ps in common.hugepage_sizes():
        prefix = f"hugetlb.{ps}"
        name = prefix + ".rsvd.current" if exists(d, prefix + ".rsvd.current") else \
            prefix + ".current"
        if not exists(d, name):
            continue
        out["hugetlb"][ps] = {"usage": read_uint(d, name),
                              "failcnt": common.read_keyed(d, prefix + ".events").get("max", 0)}


def chown(d: str, uid: int, gid: int) -> None:
    """Delegate the cgroup to uid:gid (the directory and the files the kernel lists in
    /sys/kernel/cgroup/delegate), for a container with its own cgroup namespace and a
    read-write cgroup mount (runtime-spec "Cgroup ownership")."""
    try:
        with open("/sys/kernel/cgroup/delegate") as f:
            names = [n.strip() for n in f if n.strip()]
    except OSError:
        names = ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]
    os.chown(d, uid, gid)
    for n in names:
        try:
            os.chown(f"{d}/{n}", uid, gid)
        except FileNotFoundError:
            pass
