"""The state directory: <root>/<id>/{state.json, exec.fifo, config.json, lock}.

state.json is written once by `create` (atomically) and rewritten only by commands that change
what it records. The status is never stored: it is derived each time from the init process
(alive, same start time), the exec fifo (present = created) and the freezer (paused).
"""

from . import oslite as os  # os minus its 1 ms import (runtime/oslite.py)
import time
TYPE_CHECKING = False  # typing costs milliseconds to import
if TYPE_CHECKING:
    from typing import Any

from .errors import ConfigError, ContainerNotFound, RuntimeFailure, os_error_text

STATE_FILE = "state.json"
FIFO_FILE = "exec.fifo"
CONFIG_FILE = "config.json"
CREATING_FILE = "creating.json"  # what a create in progress made or is about to (create.py)
# runp's own directory in the root, not a container: '@' is never part of an id (validate_id)
CACHE_DIR = "@cache"  # compiled seccomp filters (linux/seccomp_cache.py)


def validate_id(container_id: str) -> None:
    if (not container_id or container_id in (".", "..") or "/" in container_id
            or "\0" in container_id or len(container_id) > 1024):
        raise RuntimeFailure(f"invalid container id format: {container_id!r}")
    for ch in container_id:
        if not (ch.isalnum() or ch in "_+-.") or not ch.isascii():
            raise RuntimeFailure(f"invalid container id format: {container_id!r}")


def write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write `path` so readers see the old or the new content, never a partial file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:  # a full disk may take part of it: the rest, or ENOSPC
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        os.unlink(tmp)  # e.g. `path` is a directory: no temporary file is left behind
        if e.filename is None:  # os.write's error names no file: the one meant (disk full)
            raise OSError(e.errno, e.strerror, path) from None
        raise


def write_pid_file(path: str, pid: int) -> None:
    """--pid-file: the decimal pid without a newline, in place before the command returns
    (containerd reads it at once). An error names the file asked for, not the temporary."""
    path = os.path.abspath(path)
    try:
        write_atomic(path, str(pid).encode())
    except OSError as e:
        raise RuntimeFailure(f"--pid-file {path}: {os_error_text(e)}") from None


def proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


class State:
    """What `create` records about a container; everything later commands need. A plain class,
    not a @record: runtime.records and the decoration cost 0.15 ms of every call that reads a
    state (median of 300 in-process runs of the hot path's imports, issue 18)."""

    def __init__(self, id: str, pid: int, bundle: str, rootfs: str, created: str,
                 start_time: int, annotations: "dict[str, str] | None" = None, owner: str = "",
                 oci_version: str = "", cgroup: "dict[str, Any] | None" = None,
                 namespaces: "dict[str, str] | None" = None,
                 extra: "dict[str, Any] | None" = None) -> None:
        self.id = id
        self.pid = pid
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.start_time = start_time
        self.annotations = {} if annotations is None else annotations
        self.owner = owner
        self.oci_version = oci_version
        self.cgroup = {} if cgroup is None else cgroup
        self.namespaces = {} if namespaces is None else namespaces  # type -> /proc/<pid>/ns path
        self.extra = {} if extra is None else extra

    def to_json(self) -> bytes:
        from . import jsonlite
        return jsonlite.dumps({
            "ociVersion": self.oci_version, "id": self.id, "pid": self.pid, "bundle": self.bundle,
            "rootfs": self.rootfs, "created": self.created, "owner": self.owner,
            "annotations": self.annotations, "runp": {
                "start_time": self.start_time, "cgroup": self.cgroup,
                "namespaces": self.namespaces, **self.extra},
        }, compact=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "State":
        """A ConfigError naming the field (file "state.json") when the file is not what create
        wrote (cut short, edited by hand): every command reads it, none may crash on it."""
        # imported here, as everywhere in this module: its C scanner is a shared library (0.25 ms
        # to load), and `delete --force` of a container already gone reads no state (issue 18)
        from . import jsonlite
        try:
            d = jsonlite.loads(data)
        except ValueError as e:  # (UnicodeDecodeError is one)
            raise ConfigError("", f"invalid JSON: {e}", file=STATE_FILE) from None
        _want(d, dict, "", "an object")
        r = d.get("runp", {})
        _want(r, dict, "runp", "an object")
        for key in ("id", "bundle", "rootfs", "created"):
            _want(d.get(key), str, key, "a string")
        for key in ("ociVersion", "owner"):
            _want(d.get(key, ""), str, key, "a string")
        for src, key in ((d, "pid"), (r, "start_time")):
            v = src.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError("runp.start_time" if src is r else key,
                                  "must be a non-negative integer", file=STATE_FILE)
        _str_map(d.get("annotations") or {}, "annotations")
        _str_map(r.get("namespaces", {}), "runp.namespaces")
        cgroup = r.get("cgroup", {})
        _want(cgroup, dict, "runp.cgroup", "an object")
        if cgroup:
            _want(cgroup.get("mode"), str, "runp.cgroup.mode", "a string")
            _str_map(cgroup.get("paths") or {}, "runp.cgroup.paths")
            if cgroup.get("unified") is not None:
                _want(cgroup["unified"], str, "runp.cgroup.unified", "a string")
            created = cgroup.get("created") or []
            if not isinstance(created, list) or not all(isinstance(x, str) for x in created):
                raise ConfigError("runp.cgroup.created", "must be an array of strings",
                                  file=STATE_FILE)
            if cgroup.get("systemd") is not None:
                _want(cgroup["systemd"], dict, "runp.cgroup.systemd", "an object")
        extra = {k: v for k, v in r.items() if k not in ("start_time", "cgroup", "namespaces")}
        return cls(id=d["id"], pid=d.get("pid", 0), bundle=d["bundle"], rootfs=d["rootfs"],
                   created=d["created"], start_time=r.get("start_time", 0),
                   annotations=d.get("annotations") or {}, owner=d.get("owner", ""),
                   oci_version=d.get("ociVersion", ""), cgroup=cgroup,
                   namespaces=r.get("namespaces", {}), extra=extra)


def _want(value: object, typ: type, path: str, what: str) -> None:
    if not isinstance(value, typ):
        raise ConfigError(path, f"must be {what}", file=STATE_FILE)


def _str_map(value: object, path: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(path, "must be an object of strings", file=STATE_FILE)


class StateDir:
    """One container's directory under the runtime root."""

    def __init__(self, root: str, container_id: str) -> None:
        validate_id(container_id)
        self.root = root
        self.id = container_id
        self.path = os.path.join(root, container_id)
        self._lock_fd: int | None = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def make(self) -> None:
        """Create the directory; exactly one of several concurrent creators wins."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.path, 0o711)
        except FileExistsError:
            from .errors import ContainerExists
            raise ContainerExists(self.id) from None

    def lock(self) -> None:
        """Exclusive lock across runp processes acting on this container (flock on the dir)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(self.id) from None
        import fcntl  # here: `state` and `kill` take no lock
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> State:
        try:
            with open(self.file(STATE_FILE), "rb") as f:
                return State.from_json(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(self.id) from None
        except ConfigError as e:  # the whole path: which container's state is broken
            raise ConfigError(e.path, e.problem, file=self.file(STATE_FILE)) from None

    def save(self, state: State) -> None:
        write_atomic(self.file(STATE_FILE), state.to_json())

    def remove(self) -> None:
        """Remove the directory and what is in it (no subdirectories are ever made)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(self.path, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass


def list_ids(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root)
                      if n != CACHE_DIR and os.path.isdir(os.path.join(root, n)))
    except FileNotFoundError:
        return []


def hook_state(spec, container_id: str, status: str, pid: int) -> bytes:
    """The runtime-spec state object given to hooks and seccomp agents."""
    from . import jsonlite
    return jsonlite.dumps({"ociVersion": spec.oci_version, "id": container_id, "status": status,
                           "pid": pid, "bundle": spec.bundle,
                           "annotations": spec.annotations}).encode()


def now_rfc3339() -> str:
    t = time.time()
    ns = int((t % 1) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ns:09d}Z"
