"""`runp events`: container statistics and OOM notifications as JSON lines, as runc prints them.

    runp events --stats ID          one {"type":"stats","id":ID,"data":{...}} line, then exit
    runp events [--interval 5s] ID  a stats line every interval, an {"type":"oom","id":ID} line
                                    whenever the OOM killer kills in the container; ends when
                                    the container stops

The data object is cgroups.Manager.stats() (runc's types.Stats field names). OOM kills are
noticed by polling the cgroup's counter (memory.oom_control / memory.events) several times per
interval, so a short-lived burst is still reported once per kill.
"""
from __future__ import annotations

import time

from .errors import NotRunning, RuntimeFailure

DEFAULT_INTERVAL = 5.0
_OOM_POLL = 0.2  # seconds between looks at the OOM counter
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "100ms", "1m30s", "1.5h") in seconds; a bare number is seconds."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    total, i, n = 0.0, 0, len(s)
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    while i < n:
        j = i
        while j < n and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < n and not (s[k].isdigit() or s[k] == "."):
            k += 1
        num, unit = s[i:j], s[j:k]
        if not num or unit not in _UNITS:
            raise ValueError(f"invalid duration {text!r}")
        try:
            total += float(num) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"invalid duration {text!r}") from None
        i = k
    return total


def stats_event(container_id: str, data: dict) -> dict:
    return {"type": "stats", "id": container_id, "data": data}


def events(root: str, container_id: str, stats_once: bool, interval: float, out) -> int:
    from . import jsonlite
    from .container import Container
    if interval <= 0:
        raise RuntimeFailure("duration interval must be greater than 0")
    c = Container(root, container_id)
    if c.status() == "stopped":
        raise NotRunning(container_id)
    if not c.state.cgroup:
        raise RuntimeFailure(f"container {container_id} has no cgroup to read statistics from")
    mgr = c.cgroup()

    def emit(ev: dict) -> None:
        out.write(jsonlite.dumps(ev, compact=True) + "\n")
        out.flush()

    if stats_once:
        emit(stats_event(container_id, mgr.stats()))
        return 0
    import gc
    gc.freeze()  # runp's CLI runs without the collector; this loop may run for days:
    gc.enable()  # on, for what is made from now (see runtime/cli.py)
    ooms = _oom_count(mgr, 0)
    next_stats = time.monotonic()
    while c.alive():
        now = time.monotonic()
        count = _oom_count(mgr, ooms)
        for _ in range(max(0, count - ooms)):
            emit({"type": "oom", "id": container_id})
        ooms = max(ooms, count)
        if now >= next_stats:
            try:
                emit(stats_event(container_id, mgr.stats()))
            except FileNotFoundError:  # the cgroup went away with the container
                break
            next_stats = now + interval
        time.sleep(max(0.0, min(_OOM_POLL, next_stats - time.monotonic())))
    # a kill that stopped the container is reported before the stream ends
    count = _oom_count(mgr, ooms)
    for _ in range(max(0, count - ooms)):
        emit({"type": "oom", "id": container_id})
    return 0


def _oom_count(mgr, default: int) -> int:
    """The OOM kill counter, or `default` once the cgroup is gone."""
    try:
        return mgr.oom_events()
    except OSError:
        return default
