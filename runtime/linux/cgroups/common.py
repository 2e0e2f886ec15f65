"""Small helpers shared by the cgroup v1 and v2 code: file access, mount discovery, paths.

Only `os` is imported here: `runp delete`/`pause`/`ps` reopen a manager and must stay cheap.
"""
from __future__ import annotations

import os

from ...errors import ConfigError, RuntimeFailure, json_type
from ..mountinfo import unescape as _unescape

CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED_HYBRID = "/sys/fs/cgroup/unified"

# v1 hierarchies the runtime puts containers into (like runc: every controller it knows, plus the
# name=systemd hierarchy that systemd and tools like `systemd-cgls` look at).
V1_CONTROLLERS = frozenset((
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
    "net_cls", "net_prio", "perf_event", "rdma", "misc", "name=systemd",
))

MAX_UINT64 = (1 << 64) - 1


# --- files ----------------------------------------------------------------------------------------

def read(dirpath: str, name: str) -> str:
    fd = os.open(f"{dirpath}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def try_read(dirpath: str, name: str) -> str | None:
    try:
        return read(dirpath, name)
    except OSError:
        return None


def write(dirpath: str, name: str, value: str) -> None:
    """One write(2) of `value` to a cgroup file (the kernel parses each write separately)."""
    fd = os.open(f"{dirpath}/{name}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def exists(dirpath: str, name: str) -> bool:
    return os.path.exists(f"{dirpath}/{name}")


def parse_uint(text: str) -> int:
    """A cgroup number: "max" is 2^64-1 (like runc); negative v1 values clamp to 0."""
    text = text.strip()
    if text == "max":
        return MAX_UINT64
    try:
        v = int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            return 0
        return 0 if f < 0 else int(f)
    return 0 if v < 0 else v


def read_uint(dirpath: str, name: str, default: int | None = 0) -> int:
    try:
        return parse_uint(read(dirpath, name))
    except OSError:
        if default is None:
            raise
        return default


def read_keyed(dirpath: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line) such as memory.stat or memory.events."""
    out: dict[str, int] = {}
    try:
        text = read(dirpath, name)
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v:
            out[k] = parse_uint(v)
    return out


def read_psi(dirpath: str, name: str) -> dict | None:
    """A pressure file as runc's PSIStats ({"some": {...}, "full": {...}}), None if absent."""
    try:
        text = read(dirpath, name)
    except OSError:
        return None
    out: dict = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        d = {"avg10": 0.0, "avg60": 0.0, "avg300": 0.0, "total": 0}
        for item in parts[1:]:
            k, _, v = item.partition("=")
            if k == "total":
                d[k] = int(v)
            elif k in d:
                d[k] = float(v)
        if any(d.values()):
            out[parts[0]] = d
    return out


# --- directories ----------------------------------------------------------------------------------

def mkdirs(path: str, created: list[str]) -> None:
    """mkdir -p, appending every directory it made (parents first) to `created`. A parent that
    goes meanwhile (the last container below it deleted: cgroup_recorded.remove) is made
    again."""
    for attempt in range(10):
        missing = []
        p = path
        while not os.path.isdir(p):
            missing.append(p)
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent
        try:
            for d in reversed(missing):
                try:
                    os.mkdir(d, 0o755)
                except FileExistsError:
                    continue
                created.append(d)
            return
        except FileNotFoundError:
            if attempt == 9:
                raise


def procs(dirpath: str, recursive: bool = True) -> list[int]:
    out: list[int] = []
    try:
        text = read(dirpath, "cgroup.procs")
    except OSError:
        return out
    out.extend(int(x) for x in text.split())
    if recursive:
        try:
            subs = [e.path for e in os.scandir(dirpath) if e.is_dir(follow_symlinks=False)]
        except OSError:
            subs = []
        for s in subs:
            out.extend(procs(s, True))
    return out


# --- discovery ------------------------------------------------------------------------------------

def v1_mounts() -> list[tuple[str, str, frozenset[str]]]:
    """The mounted cgroup v1 hierarchies the runtime uses: (mountpoint, mount root, controllers).

    One entry per hierarchy (the first mount of it, preferring those under /sys/fs/cgroup).
    """
    seen: dict[frozenset[str], tuple[str, str, frozenset[str]]] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            pre, sep, post = line.partition(" - ")
            if not sep:
                continue
            post_f = post.split()
            if not post_f or post_f[0] != "cgroup":
                continue
            fields = pre.split()
            root, mnt = _unescape(fields[3]), _unescape(fields[4])
            opts = post_f[2].split(",") if len(post_f) > 2 else []
            ctrls = frozenset(o for o in opts if o in V1_CONTROLLERS or o.startswith("name="))
            if not ctrls & V1_CONTROLLERS:
                continue
            prev = seen.get(ctrls)
            if prev is None or (not prev[0].startswith(CGROUP_ROOT + "/")
                                and mnt.startswith(CGROUP_ROOT + "/")):
                seen[ctrls] = (mnt, root, ctrls)
    return list(seen.values())


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """/proc/PID/cgroup as {controller: path}; the v2 entry has key ""."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            _, _, rest = line.partition(":")
            ctrls, _, path = rest.partition(":")
            if not ctrls:
                out[""] = path
            for c in ctrls.split(","):
                if c:
                    out[c] = path
    return out


def own_v1_dir(mnt: str, root: str, ctrls: frozenset[str], own: dict[str, str]) -> str:
    """Our own cgroup in the v1 hierarchy mounted at `mnt` (a mount that shows the hierarchy
    from `root` down), given own_cgroups()."""
    o = next((own[c] for c in sorted(ctrls) if c in own), "/")
    if root != "/" and (o == root or o.startswith(root + "/")):
        o = o[len(root):] or "/"
    return join(mnt, o)


def v2_root(mode: str) -> str:
    """Where the cgroup2 tree is mounted: all of /sys/fs/cgroup (v2), or its unified part
    (hybrid)."""
    return CGROUP_ROOT if mode == "v2" else UNIFIED_HYBRID


def clean_path(path: str) -> str:
    """Lexically clean a cgroup path; ".." never climbs above the start ("/" for both kinds)."""
    absolute = path.startswith("/")
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    joined = "/".join(parts)
    return "/" + joined if absolute else joined


def join(*parts: str) -> str:
    """Join cgroup path pieces; every piece after the first is taken as relative."""
    out = parts[0].rstrip("/") or "/"
    for p in parts[1:]:
        p = p.strip("/")
        if p:
            out = out + "/" + p if out != "/" else "/" + p
    return out


def not_supported(field: str, why: str) -> ConfigError:
    return ConfigError(field, f"not supported on this host ({why})")


def ignored(field: str, why: str) -> None:
    """A deprecated limit this host cannot apply is a warning naming it, never silent (runc
    1.2 warns about kernel memory too)."""
    from ...log import log
    where = f"config.json: {field}" if field.startswith("linux.") else field
    log.warning(f"{where}: ignored: {why}")


def write_field(field: str, dirpath: str, name: str, value: str) -> None:
    """Write a resource value; failures become a ConfigError naming the config field."""
    try:
        write(dirpath, name, value)
    except FileNotFoundError:
        if not os.path.isdir(dirpath):
            raise RuntimeFailure(f"cgroup {dirpath} does not exist") from None
        raise not_supported(field, f"{dirpath}/{name} does not exist") from None
    except OSError as e:
        raise ConfigError(field, f"cannot write {value!r} to {dirpath}/{name}: "
                                 f"{e.strerror or e}") from None


# --- config value accessors ---------------------------------------------------------------------


def get_int(obj: dict, key: str, field: str, lo: int | None = None,
            hi: int | None = None) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise ConfigError(f"{field}.{key}", f"must be an integer, not {json_type(v)}")
    if lo is not None and v < lo:
        raise ConfigError(f"{field}.{key}", f"must be at least {lo}, not {v}")
    if hi is not None and v > hi:
        raise ConfigError(f"{field}.{key}", f"must be at most {hi}, not {v}")
    return v


def get_bool(obj: dict, key: str, field: str) -> bool | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise ConfigError(f"{field}.{key}", f"must be a boolean, not {json_type(v)}")
    return v


def get_str(obj: dict, key: str, field: str) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ConfigError(f"{field}.{key}", f"must be a string, not {json_type(v)}")
    return v


def get_obj(obj: dict, key: str, field: str) -> dict | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ConfigError(f"{field}.{key}", f"must be an object, not {json_type(v)}")
    return v


def get_list(obj: dict, key: str, field: str) -> list | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list):
        raise ConfigError(f"{field}.{key}", f"must be an array, not {json_type(v)}")
    return v


def hugepage_sizes() -> list[str]:
    """Huge page sizes of this host in cgroup file naming ("2MB", "1GB"), like runc."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    out = []
    for n in names:
        if not n.startswith("hugepages-") or not n.endswith("kB"):
            continue
        try:
            kb = int(n[len("hugepages-"):-2])
        except ValueError:
            continue
        out.append(page_size_name(kb * 1024))
    return sorted(out, key=page_size_bytes)


def page_size_name(size: int) -> str:
    units = ("B", "KB", "MB", "GB", "TB", "PB")
    i = 0
    while size >= 1024 and size % 1024 == 0 and i < len(units) - 1:
        size //= 1024
        i += 1
    return f"{size}{units[i]}"


def page_size_bytes(name: str) -> int:
    units = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}
    for u in ("KB", "MB", "GB", "TB", "PB", "B"):
        if name.endswith(u):
            try:
                return int(name[:-len(u)]) * units[u]
            except ValueError:
                return -1
    return -1


# --- making a cgroup: what create() needs besides mkdir (kept here, so that creating a
# container imports neither v1.py nor v2.py when no resources need them) ---------------------

def init_cpuset(d: str) -> None:
    """New v1 cpuset cgroups start with no CPUs and no memory nodes (and then refuse tasks):
    copy the parent's, top down, as runc does. Every level from the first initialised ancestor
    down is checked, not only the ones this call made: a parallel create may have made a
    shared parent a moment ago and not filled it in yet."""
    chain = []
    p = d
    while True:
        cpus = try_read(p, "cpuset.cpus")
        if cpus is None:  # above the hierarchy's root
            break
        if cpus.strip() and (try_read(p, "cpuset.mems") or "").strip():
            break
        chain.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(chain):
        parent = os.path.dirname(d)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not (try_read(d, name) or "").strip():
                val = (try_read(parent, name) or "").strip()
                if val:
                    try:
                        write(d, name, val)
                    except OSError as e:
                        raise RuntimeFailure(f"cannot initialise {d}/{name}: {e.strerror}") \
                            from None


def controllers(d: str) -> set[str]:
    return set((try_read(d, "cgroup.controllers") or "").split())


def enable_controllers(root: str, leaf: str, only: set[str] | None = None) -> None:
    """Enable every available controller (or those in `only`) in cgroup.subtree_control of
    each cgroup from `root` down to the parent of `leaf`, like runc. Failures are left for
    apply() to report (a cgroup with processes cannot enable domain controllers)."""
    rel = leaf[len(root):].strip("/")
    parts = rel.split("/") if rel else []
    cur = root
    for p in parts:
        avail = controllers(cur)
        if only is not None:
            avail &= only
        have = set((try_read(cur, "cgroup.subtree_control") or "").split())
        want = sorted(avail - have)
        if want:
            try:
                write(cur, "cgroup.subtree_control", " ".join("+" + c for c in want))
            except OSError:
                for c in want:
                    try:
                        write(cur, "cgroup.subtree_control", "+" + c)
                    except OSError:
                        pass
        cur = cur + "/" + p
