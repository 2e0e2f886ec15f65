"""What the per-container commands need of the cgroup that state.json records: its
directories, whether it is frozen (`state` and `kill` report "paused") and removing it (`delete`),
with the parent cgroups runp made for it (see PARENT_MARKS).

It sits beside the cgroups package, not in it (as cgroup_mount.py and cgroup_prime.py do):
importing the package (the manager and the resource code) costs about 0.5-0.8 ms, close to a
tenth of a `state`, `kill` or `delete`, which callers make for every container. The cgroup
dict is what cgroups.Manager.to_dict() wrote: {"paths": {controller: dir}, "unified": dir,
"created": [dirs], ...}.
"""

import errno
from .. import oslite as os  # os minus its 1 ms import (runtime/oslite.py)
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


def empty(cgroup: dict) -> bool:
    """Whether the recorded cgroup certainly holds no process, sub-cgroups included: cgroup2's
    cgroup.events says "populated 0" (hybrid hosts have it in the unified hierarchy too). False
    when that cannot be told (no cgroup2 directory, or it is gone)."""
    unified = cgroup.get("unified")
    events = _try_read(f"{unified}/cgroup.events") if unified else None
    return events is not None and "populated 0" in events


def _try_read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def planned(leaves: list[str]) -> list[str]:
    """The directories making `leaves` would create now (each leaf and its missing parents,
    parents first), as cgroups.common.mkdirs will: what a create records before it starts."""
    out: list[str] = []
    for leaf in leaves:
        missing = []
        p = leaf
        while p != "/" and not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        out += [d for d in reversed(missing) if d not in out]
    return out


def remove_recorded(cgroup: dict) -> None:
    """remove() for the recorded cgroup."""
    remove(dirs(cgroup.get("paths") or {}, cgroup.get("unified")), cgroup.get("created") or [])


def remove(leaves: list[str], created: list[str]) -> None:
    """Remove what create made: the container's own cgroups (`leaves`, those in `created`) with
    any sub-cgroups made inside them, retrying EBUSY for about a second while processes exit;
    then, nearest first, the parents runp made above them (made_parents), whichever container
    made them. A parent other cgroups still use stays, marked, for the last of them to remove;
    parents that existed before runp stay."""
    made = set(created)
    pending = [d for d in leaves if d in made]
    failed: dict[str, OSError] = {}
    delay = 0.001
    for _ in range(11):
        failed = {}
        for d in pending:
            err = remove_tree(d, retry=False)
            if err is not None:
                failed[d] = err
        if not any(e.errno == errno.EBUSY for e in failed.values()):
            break
        pending = list(failed)
        time.sleep(delay)
        delay *= 2
    marks = parent_marks()
    for leaf in leaves:
        if leaf in failed or leaf not in made:
            continue   # a leaf that stays keeps its parents busy
        for parent, mark in made_parents(leaf, made, marks):
            err = rmdir_retry(parent, False)
            if err is None:
                if mark:
                    _unlink(mark)
                continue
            if err.errno in (errno.EBUSY, errno.ENOTEMPTY):
                mark_parent(parent)   # other cgroups below it: the last one out removes it
            else:
                failed[parent] = err
            break
    if failed:
        raise RuntimeFailure("cannot remove cgroup " + "; ".join(
            f"{d}: {e.strerror}" for d, e in failed.items()))


# A parent cgroup runp made for a nested cgroupsPath ("/pod/ctr") is shared by every container
# put below it, but only the one that made it has it in its "created" list; if that one goes
# first, the parent (with the realtime budget runp may have given it) would outlive them all.
# So runp also marks the parents it makes: an empty file per directory, named by the
# directory's device and inode number (cgroupfs does not reuse those), so a directory that
# someone else makes later at the same path is never taken for one of ours. Best effort: where
# the marks cannot be written, the maker alone removes its parents, as before.
PARENT_MARKS = "/run/runp-cgroup-parents"


def _mark_name(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}-{st.st_ino}"


def mark_parent(path: str) -> None:
    """Mark a cgroup as made by runp, for whichever container below it goes last."""
    name = _mark_name(path)
    if name is None:
        return
    try:
        os.makedirs(PARENT_MARKS, 0o700, exist_ok=True)
        os.close(os.open(f"{PARENT_MARKS}/{name}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                         0o600))
    except OSError:
        pass


def parent_marks() -> set[str]:
    """The marks there are: one listing, so that a delete with none (the usual case: marked
    parents go with their last container) costs no stat of any parent."""
    try:
        return set(os.listdir(PARENT_MARKS))
    except OSError:
        return set()


def made_parents(leaf: str, created: set[str] | list[str],
                 marks: set[str]) -> list[tuple[str, str | None]]:
    """The cgroups runp made above `leaf`, nearest first, each with its mark file (None if
    only `created` says so): its ancestors up to the first one that neither is in `created`
    (made for this container) nor carries one of `marks` (made for another)."""
    out: list[tuple[str, str | None]] = []
    p = os.path.dirname(leaf)
    while p != "/":
        name = _mark_name(p) if marks else None
        mark = f"{PARENT_MARKS}/{name}" if name in marks else None
        if mark is None and p not in created:
            break
        out.append((p, mark))
        p = os.path.dirname(p)
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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
