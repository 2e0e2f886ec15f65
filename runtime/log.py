"""Logging as runc does it: --log FILE, --log-format text|json, --debug.

containerd and conmon read the JSON lines ({"level","msg","time"}) and report the last error,
so every failure is logged there as well as printed on stderr.
"""

from . import oslite as os  # os minus its 1 ms import (runtime/oslite.py)
import sys
import time

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self) -> None:
        self.path: str | None = None
        self.fmt = "text"
        self.level = _LEVELS["warning"]
        self._fd: int | None = None
        self.t0 = time.monotonic()

    def configure(self, path: str | None, fmt: str, debug: bool) -> None:
        """Raises OSError when `path` cannot be opened: runc fails the command then (whatever
        it is), rather than losing every line a caller such as containerd would look for."""
        self.fmt = fmt
        if debug:
            self.level = _LEVELS["debug"]
        if path:
            self._fd = _open_high(path)
            self.path = path

    def _out(self) -> int:
        return 2 if self._fd is None else self._fd

    def fileno(self) -> int:
        """The log file's fd if one is open (the container init keeps it until exec), else -1."""
        return self._fd if self._fd is not None and self._fd > 2 else -1

    def log(self, level: str, msg: str) -> None:
        if _LEVELS[level] < self.level:
            return
        t = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
        if self.fmt == "json":
            from . import jsonlite
            line = jsonlite.dumps({"level": level, "msg": msg, "time": stamp}, compact=True) + "\n"
        else:
            esc = msg.replace("\\", "\\\\").replace('"', '\\"')
            line = f'time="{stamp}" level={level} msg="{esc}"\n'
        try:
            os.write(self._out(), line.encode())
        except OSError:
            pass

    def debug(self, msg: str) -> None:
        self.log("debug", msg)

    def warning(self, msg: str) -> None:
        self.log("warning", msg)
        if self.path:  # runc shows warnings on stderr too
            sys.stderr.write(f"WARN: {msg}\n")

    def error(self, msg: str) -> None:
        self.log("error", msg)

    def phase(self, name: str) -> None:
        """--debug: how long each setup phase took since the previous one."""
        if self.level <= _LEVELS["debug"]:
            now = time.monotonic()
            self.debug(f"phase {name}: {(now - self.t0) * 1000:.1f} ms")
            self.t0 = now


def _open_high(path: str) -> int:
    """The log file, opened close-on-exec at fd 1000 or above: far above the fds a container
    may be given (--preserve-fds), so it is never handed over."""
    import fcntl
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000)
    except OSError:  # RLIMIT_NOFILE below 1001
        return fd
    os.close(fd)
    return high


log = Logger()
