"""Talking to CRIU: `criu swrk` over a SOCK_SEQPACKET socketpair, with criu's RPC messages.

runc drives criu the same way (libcontainer criuSwrk): one `criu swrk 3` per request, the socket
as its fd 3, the files criu must inherit (namespaces, the new stdio) after it, and on restore the
restored tree made a child of ours (rst_sibling). The messages are the classes generated from
criu's rpc.proto that Debian's criu package ships in its Python module pycriu (pycriu.rpc_pb2); its
`criu` class is not used: it cannot answer notifications (restore's hooks and pty master need
that) nor hand criu extra files. Only checkpoint, restore and `features` import this module.

When criu cannot work at all (not installed, or its kernel probe fails, as Debian's 3.17 does on
kernel 6.18: "vdso: Failed to fill self vdso symtable"), `problem()` gives the one-line reason
from `criu check`, with what to install.
"""
from __future__ import annotations

import fcntl
import os

from .errors import RuntimeFailure
from .linux import fdpass

INSTALL_HINT = "Debian: apt-get install criu"


def find(path: str | None) -> str | None:
    """The criu binary --criu names (runc's default: "criu" on PATH), or None."""
    path = path or "criu"
    if "/" in path:
        return path if os.access(path, os.X_OK) else None
    dirs = os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/sbin"]  # (not shutil: re)
    return next((f"{d}/{path}" for d in dirs if d and os.access(f"{d}/{path}", os.X_OK)), None)


_rpc = None


def rpc():
    """criu's generated RPC message module, pycriu/rpc_pb2.py, loaded by itself: `import
    pycriu.rpc_pb2` runs the package's __init__, which loads the 60 image-format modules too
    (45 ms here against 12 ms; under the test VM's emulation that is seconds per command)."""
    global _rpc
    if _rpc is None:
        import importlib.util
        try:
            pkg = importlib.util.find_spec("pycriu")
            if pkg is None or not pkg.origin:
                raise ImportError("no module named 'pycriu'")
            path = os.path.join(os.path.dirname(pkg.origin), "rpc_pb2.py")
            spec = importlib.util.spec_from_file_location("_runp_criu_rpc_pb2", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        except (ImportError, OSError) as e:
            raise RuntimeFailure(f"criu's Python module pycriu is unusable ({e}): checkpoint/"
                                 f"restore need it ({INSTALL_HINT} python3-protobuf)") from None
        _rpc = mod
    return _rpc


def problem(criu: str | None) -> str | None:
    """Why criu cannot work here (one line with what to install), or None if `criu check`
    passes. Runs `criu check` (about 0.1 s on the host, a second under TCG)."""
    import subprocess
    path = find(criu)
    if path is None:
        return (f"criu ({criu or 'criu'}) is not installed: checkpoint/restore need it "
                f"({INSTALL_HINT})")
    try:
        p = subprocess.run([path, "check"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"criu ({path}) is unusable on this host: criu check: {e}"
    if p.returncode == 0:
        return None
    lines = [ln.strip() for ln in p.stdout.decode(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    why = (errors[0] if errors else lines[-1]) if lines else f"exit status {p.returncode}"
    ver = version_text(path)
    return (f"criu {ver} ({path}) is unusable with kernel {os.uname().release}: criu check "
            f"failed: {why} (install a criu release that supports this kernel, or boot a kernel "
            f"this criu supports)")


def version_text(path: str) -> str:
    """`criu --version`'s "Version: X" (without swrk: it works where criu's kernel probe fails)."""
    import subprocess
    try:
        out = subprocess.run([path, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=30).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "?"


RECV_MAX = 1 << 17  # criu's answers are small (runc reads 40 KiB)


class CriuError(RuntimeFailure):
    pass


class Swrk:
    """One `criu swrk` and its socket: send a request, answer notifications, get the result."""

    def __init__(self, path: str, *, stdio: tuple[int, int, int] | None = None,
                 extra_fds: list[int] = (), cgroup_join=None) -> None:
        """Starts criu with `stdio` as its 0-2 (/dev/null by default) and `extra_fds` as its fds
        4, 5, ...; `cgroup_join(pid)` runs before any request (restore: criu joins the
        container's cgroup first, as runc's criuApplyCgroups)."""
        self.path = path
        ours, theirs = fdpass.socketpair()
        self.sock = ours
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC) if stdio is None else -1
        want = list(stdio if stdio is not None else (null, null, null)) + [theirs.fileno(),
                                                                           *extra_fds]
        try:
            self.pid = os.fork()
            if self.pid == 0:  # pragma: no cover (child)
                try:
                    # first above every target, then into place (sources may be targets);
                    # the copies are close-on-exec, and so is every other fd Python made
                    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in want]
                    for target, fd in enumerate(high):
                        os.dup2(fd, target, inheritable=True)
                    os.closerange(len(want), 100)
                    os.execv(path, [path, "swrk", "3"])
                finally:
                    os._exit(127)
        finally:
            theirs.close()
            if null >= 0:
                os.close(null)
        self.status: int | None = None
        if cgroup_join is not None:
            try:
                cgroup_join(self.pid)
            except BaseException:
                self.close()
                raise

    def call(self, req, on_notify=None):
        """Send `req`; answer each NOTIFY with on_notify(script, pid, fds) (an exception is
        reported to criu as a failed script, then raised); return the final response."""
        r = rpc()
        self.sock.send(req.SerializeToString())
        while True:
            try:
                data, fds = _recv(self.sock)
            except OSError as e:
                raise CriuError(f"criu: {e.strerror}") from None
            if not data:
                self.wait()
                raise CriuError(f"criu exited without an answer ({_exit_text(self.status)})")
            resp = r.criu_resp()
            resp.ParseFromString(data)
            if resp.type == r.NOTIFY and resp.success:
                err = None
                try:
                    if on_notify is not None:
                        on_notify(resp.notify.script, resp.notify.pid, fds)
                except BaseException as e:
                    err = e
                finally:
                    for fd in fds:
                        _close(fd)
                ack = r.criu_req(type=r.NOTIFY, notify_success=err is None)
                try:
                    self.sock.send(ack.SerializeToString())
                except OSError:
                    pass
                if err is not None:
                    raise err
                continue
            for fd in fds:
                _close(fd)
            return resp

    def wait(self) -> int:
        if self.status is None:
            self.status = os.waitpid(self.pid, 0)[1]
        return self.status

    def close(self) -> None:
        """Hang up (criu exits when its socket closes) and reap it."""
        try:
            self.sock.shutdown(2)  # SHUT_RDWR
        except OSError:
            pass
        self.sock.close()
        try:
            self.wait()
        except ChildProcessError:
            pass


def _recv(sock) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it (orphan-pts-master sends the pty master)."""
    data, fds = fdpass.recv_fds(sock, RECV_MAX, 16)
    if len(data) >= RECV_MAX:
        raise OSError(0, f"criu's answer is larger than {RECV_MAX} bytes")
    return data, fds


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _exit_text(status: int | None) -> str:
    if status is None:
        return "still running"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def version(path: str) -> int:
    """criu's version as runc compares it (major*10000 + minor*100 + sublevel), over RPC."""
    r = rpc()
    s = Swrk(path)
    try:
        resp = s.call(r.criu_req(type=r.VERSION))
    finally:
        s.close()
    if not resp.success:
        raise CriuError("criu VERSION request failed")
    v = resp.version
    return v.major_number * 10000 + v.minor_number * 100 + (v.sublevel or 0)


def log_reason(log_path: str) -> str:
    """The first "Error" line of criu's log (its own reason), or "". Its probe for tun
    devices logs an error on hosts without /dev/net/tun (the test VM) and goes on: skipped."""
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if "Error (" in line and "tun: " not in line:
                    return line.strip()
    except OSError:
        pass
    return ""
