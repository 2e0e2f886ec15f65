"""What the per-container commands need of the cgroup that state.json records: its
directories, whether it is frozen (`state` and `kill` report "paused") and removing it (`delete`).

It sits beside the cgroups package, not in it (as cgroup_mount.py and cgroup_prime.py do):
importing the package (the manager and the resource code) costs about 0.5-0.8 ms, close to a
tenth of a `state`, `kill` or `delete`, which callers make for every container. The cgroup
dict is what cgroups.Manager.to_dict() wrote: {"paths": {controller: dir}, "unified": dir,
"created": [dirs], ...}.
"""
from __future__ import annotations

import errno
import os
import time

from ..errors import RuntimeFailure


def dirs(paths: dict[str, str], unified: str | None) -> list[str]:
    """A container's cgroup directories, each once: its v1 hierarchies, then cgroup2."""
    out: list[str] = []
    for d in paths.values():
        if d not in out:
            out.append(d)
    if unified and unified not in out:
        out.append(unified)
    return out


def frozen(cgroup: dict) -> bool:
    """Whether the recorded cgroup is frozen: the v1 freezer hierarchy if there is one, else
    cgroup2 (where the freezer is part of the core)."""
    d = (cgroup.get("paths") or {}).get("freezer")
    if d:
        return is_frozen("v1", d)
    return bool(cgroup.get("unified")) and is_frozen("v2", cgroup["unified"])


def is_frozen(version: str, d: str) -> bool:
    """v1: freezer.state, waiting out FREEZING; frozen only because an ancestor is (self_freezing
    0) is not paused. v2: cgroup.freeze. A missing file (cgroup gone) is not frozen."""
    if version == "v2":
        return (_try_read(f"{d}/cgroup.freeze") or "0").strip() == "1"
    for _ in range(10000):
        state = _try_read(f"{d}/freezer.state")
        if state is None or state.strip() == "THAWED":
            return False
        if state.strip() == "FROZEN":
            self_freezing = _try_read(f"{d}/freezer.self_freezing")
            return self_freezing is None or self_freezing.strip() == "1"
        time.sleep(0.001)
    return True


def _try_read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def remove_recorded(cgroup: dict) -> None:
    """remove() for the recorded cgroup."""
    remove(dirs(cgroup.get("paths") or {}, cgroup.get("unified")), cgroup.get("created") or [])


def remove(leaves: list[str], created: list[str]) -> None:
    """Remove the directories create made (`created`), deepest first: the container's own
    cgroups (`leaves`) with any sub-cgroups made inside them, retrying EBUSY for about a second
    while processes exit. Parents that existed before, or that other cgroups still use, stay."""
    own = set(leaves)
    pending = sorted(created, key=lambda p: p.count("/"), reverse=True)
    failed: dict[str, OSError] = {}
    delay = 0.001
    for _ in range(11):
        failed = {}
        for d in pending:
            if d in own:
                err = remove_tree(d, retry=False)
            else:
                err = rmdir_retry(d, False)
                if err is not None and err.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    err = None  # still used by other cgroups: keep it
            if err is not None:
                failed[d] = err
        if not any(e.errno == errno.EBUSY for e in failed.values()):
            break
        time.sleep(delay)
        delay *= 2
    if failed:
        raise RuntimeFailure("cannot remove cgroup " + "; ".join(
            f"{d}: {e.strerror}" for d, e in failed.items()))


def rmdir_retry(path: str, retry: bool) -> OSError | None:
    """rmdir, retrying EBUSY for about a second (processes still exiting). None when gone."""
    delay = 0.001
    for _ in range(11 if retry else 1):
        try:
            os.rmdir(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno != errno.EBUSY or not retry:
                return e
            err = e
        time.sleep(delay)
        delay *= 2
    return err


def remove_tree(path: str, retry: bool = True) -> OSError | None:
    """Remove a cgroup and the sub-cgroups the container made inside it, deepest first."""
    if rmdir_retry(path, False) is None:
        return None
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return None
    except OSError as e:
        return e
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            err = remove_tree(e.path, retry)
            if err is not None:
                return err
    return rmdir_retry(path, retry)
