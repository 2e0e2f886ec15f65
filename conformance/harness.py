"""What the cases are written against: host facts (/proc, mountinfo, cgroups), bundles on a
busybox-static rootfs, the runtime driven through its command line (T, one per case, which
records everything it makes and removes it), and small helpers the cases share."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from registry import Case, Fail, Skip, check

BUSYBOX = "/bin/busybox"
# the cgroup parent of every case's container; a run of its own may name another (the pytest
# wrapper does, so that suites running at once never see each other's cgroups as leaks)
CGROUP_PARENT = os.environ.get("OCI_CONFORMANCE_CGROUP_PARENT", "oci-conformance")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
CAP_NUMBERS = {n: i for i, n in enumerate(
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE".split())}
# the busybox applets the cases use (a link per applet: every bundle gets its own copy)
APPLETS = ("sh cat echo true false sleep touch stat mount umount id grep hostname env pwd ls wc "
           "head readlink uname ionice tty stty test mkdir rm ln printf tr cut sort kill ps "
           "mknod chmod sed seq xargs").split()
AUTO_CGROUP = "@auto"  # replaced by /oci-conformance/<id> at create
MARKER_ENV = "OCI_CONFORMANCE_MARKER"  # in the runtime's environment, never in a hook's
STATUSES = ("creating", "created", "running", "stopped")


# ---------------------------------------------------------------------------------------------
# host facts

def read(path: str | Path, default: str | None = None) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        if default is None:
            raise
        return default


def ns_inode(pid: int | str, ns: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{ns}")


def parse_mountinfo(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        out.append({"id": int(f[0]), "parent": int(f[1]), "mp": _unescape(f[4]),
                    "root": _unescape(f[3]), "opts": set(f[5].split(",")), "optional": f[6:],
                    "fstype": r[0], "source": r[1],
                    "super": set(r[2].split(",")) if len(r) > 2 else set()})
    return out


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mount_points_under(prefix: str) -> list[str]:
    prefix = prefix.rstrip("/") + "/"
    return [m["mp"] for m in parse_mountinfo(read("/proc/self/mountinfo"))
            if m["mp"].startswith(prefix)]


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat, None if gone."""
    try:
        data = read(f"/proc/{pid}/stat")
    except OSError:
        return None
    return data[data.rfind(")") + 2]


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def status_field(pid: int | str, name: str) -> str:
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def cap_mask(names: list[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << CAP_NUMBERS[n[4:]]
    return m


def our_children() -> list[int]:
    """Processes whose parent is this suite: runtimes have exited, so these are containers'
    processes re-parented to us (we are a child subreaper)."""
    me = str(os.getpid())
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                s = read(f"/proc/{d}/stat")
            except OSError:
                continue
            if s[s.rfind(")") + 2:].split()[1] == me and proc_state(int(d)) not in ("Z", "X", None):
                out.append(int(d))
    return out


def reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Cgroups:
    """Where each controller lives on this host (v1 hierarchy, the unified v2 hierarchy, or
    nowhere), to find a container's cgroup files from outside."""

    def __init__(self) -> None:
        self.v1: dict[str, str] = {}   # controller -> mount point
        self.v2: str | None = None
        self.v2_controllers: set[str] = set()
        for m in parse_mountinfo(read("/proc/self/mountinfo")):
            if m["fstype"] == "cgroup":
                for o in m["super"]:
                    if o in ("rw", "ro") or "=" in o and not o.startswith("name="):
                        continue
                    self.v1.setdefault(o, m["mp"])
            elif m["fstype"] == "cgroup2" and self.v2 is None:
                self.v2 = m["mp"]
        if self.v2:
            self.v2_controllers = set(read(os.path.join(self.v2, "cgroup.controllers"), "").split())
        self.pure_v2 = not self.v1 and self.v2 is not None

    def roots(self) -> list[str]:
        return sorted(set(self.v1.values()) | ({self.v2} if self.v2 else set()))

    def file(self, pid: int, controller: str, v1name: str, v2name: str | None) -> tuple[str, str]:
        """(version, path) of a cgroup file of `pid` for `controller`; Skip when absent."""
        lines = read(f"/proc/{pid}/cgroup").splitlines()
        if controller in self.v1:
            for line in lines:
                _, ctrls, path = line.split(":", 2)
                if controller in ctrls.split(","):
                    return "v1", os.path.join(self.v1[controller] + path, v1name)
        if self.v2 and controller in self.v2_controllers and v2name:
            for line in lines:
                if line.startswith("0::"):
                    return "v2", os.path.join(self.v2 + line[3:], v2name)
        raise Skip(f"no {controller} cgroup controller on this machine")

    def paths_for(self, cgpath: str) -> list[str]:
        return [os.path.join(r, cgpath.lstrip("/")) for r in self.roots()]


# ---------------------------------------------------------------------------------------------
# bundles and the runtime

def build_template(dest: Path) -> None:
    """A busybox-static rootfs: /bin/busybox, a symlink per applet, passwd/group, mount points."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "out", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for a in APPLETS:
        (dest / "bin" / a).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "user:x:1000:1000:user:/home/user:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    (dest / "tmp").chmod(0o1777)


def base_config(out_dir: str) -> dict:
    """A config like `runc spec` (no terminal, writable root) plus /out, in its own cgroup."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["true"],
            "env": [PATH_ENV, "TERM=xterm"], "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "oci-conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/out", "type": "bind", "source": out_dir, "options": ["rbind", "rw"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "cgroupsPath": AUTO_CGROUP,
        },
    }


class Bundle:
    def __init__(self, path: Path, template: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        self.out = path.parent / (path.name + "-out")
        path.mkdir(parents=True)
        self.out.mkdir()
        self.out.chmod(0o777)
        shutil.copytree(template, self.rootfs, symlinks=True)
        self.config = base_config(str(self.out))
        self.auto_cgroup = AUTO_CGROUP

    @property
    def process(self) -> dict:
        return self.config["process"]

    @property
    def linux(self) -> dict:
        return self.config["linux"]

    def args(self, *args: str) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self

    def sh(self, script: str) -> "Bundle":
        return self.args("sh", "-c", script)

    def namespaces(self, *types: str) -> "Bundle":
        self.linux["namespaces"] = [{"type": t} for t in types]
        return self

    def mount(self, dest: str, typ: str, source: str, options: list[str] | None = None) -> "Bundle":
        m = {"destination": dest, "type": typ, "source": source}
        if options is not None:
            m["options"] = options
        self.config["mounts"].append(m)
        return self

    def write(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=1))


@dataclass
class Run:
    """What one container run left: its exit status (None if unknown), stdout+stderr, files."""
    rc: int | None
    out: str
    bundle: Bundle
    cid: str


class Proc:
    def __init__(self, rc: int, out: str, err: str, args: list[str]) -> None:
        self.rc, self.out, self.err, self.args = rc, out, err, args

    def __str__(self) -> str:
        return f"`{' '.join(self.args)}` exited {self.rc}: {(self.err or self.out).strip()[-400:]}"


class Suite:
    def __init__(self, runtime: str, work: Path, verbose: bool = False) -> None:
        self.runtime = runtime
        self.work = work
        self.root = work / "root"
        self.template = work / "template" / "rootfs"
        self.verbose = verbose
        self.cg = Cgroups()
        build_template(self.template)
        self.caps_bounding = int(status_field("self", "CapBnd"), 16)

    def cleanup(self) -> list[str]:
        """Remove the cgroup parents; returns what could not be removed."""
        left = []
        for r in self.cg.roots():
            p = os.path.join(r, CGROUP_PARENT)
            if os.path.isdir(p):
                for d, subdirs, _ in sorted(os.walk(p), key=lambda x: -len(x[0])):
                    try:
                        os.rmdir(d)
                    except OSError:
                        left.append(d)
        return left


class T:
    """One case's context: its bundles, the containers it made, and their cleanup."""

    def __init__(self, suite: Suite, c: Case, n: int) -> None:
        self.s = suite
        self.case = c
        self.dir = suite.work / f"case{n:03d}"
        self.dir.mkdir()
        self.ids: list[str] = []
        self.cgpaths: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.files: dict[str, Path] = {}
        self.cleanups: list[Callable[[], None]] = []
        self.nb = 0
        self.notes: list[str] = []

    # -- building -------------------------------------------------------------------------------
    def bundle(self, *args: str) -> Bundle:
        self.nb += 1
        b = Bundle(self.dir / f"bundle{self.nb}", self.s.template)
        if args:
            b.args(*args)
        return b

    def new_id(self) -> str:
        cid = f"oci-{self.case.name.replace('.', '-').replace('_', '-')[:30]}-{uuid.uuid4().hex[:6]}"
        self.ids.append(cid)
        return cid

    def defer(self, fn: Callable[[], None]) -> None:
        self.cleanups.append(fn)

    # -- the runtime ------------------------------------------------------------------------------
    def rt(self, *args: str, timeout: float = 30, cwd: str | None = None, stdout=None, stderr=None,
           preexec_fn=None, env_extra: dict | None = None) -> Proc:
        """Run the runtime with our private --root. Output goes through files, never pipes: a
        created container inherits the runtime's stdio."""
        argv = [self.s.runtime, "--root", str(self.s.root), *args]
        env = dict(os.environ, **{MARKER_ENV: "leak"}, **(env_extra or {}))
        with tempfile.TemporaryFile(dir=self.dir) as o, tempfile.TemporaryFile(dir=self.dir) as e:
            for attempt in range(100):
                try:
                    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout or o,
                                       stderr=stderr or e, timeout=timeout, cwd=cwd, env=env,
                                       preexec_fn=preexec_fn)
                    break
                except subprocess.TimeoutExpired:
                    raise Fail(f"`{' '.join(args)}` did not return within {timeout}s") from None
                except FileNotFoundError:  # a reinstall of the runtime in progress: wait for it
                    if attempt == 99 or cwd and not os.path.isdir(cwd):
                        raise
                    time.sleep(0.1)
            o.seek(0)
            e.seek(0)
            out, err = o.read().decode(errors="replace"), e.read().decode(errors="replace")
        if self.s.verbose:
            print(f"#   $ {' '.join(args)} -> {p.returncode} {err.strip()[:200]}", flush=True)
        return Proc(p.returncode, out, err, list(args))

    def create(self, b: Bundle, cid: str | None = None, extra: tuple[str, ...] = (),
               preexec_fn=None, cwd: str | None = None, bundle_arg: str | None = None) -> str:
        cid = self._prepare(b, cid)
        p = self._create(b, cid, extra, preexec_fn, cwd, bundle_arg)
        if p.rc != 0:
            raise Fail(f"create failed ({p.rc}): {self.output(cid).strip()[-400:]}")
        self.pids[cid] = self.state(cid).get("pid", 0)
        return cid

    def _prepare(self, b: Bundle, cid: str | None) -> str:
        cid = cid or self.new_id()
        if cid not in self.ids:
            self.ids.append(cid)
        lx = b.config.get("linux", {})
        if lx.get("cgroupsPath") in (AUTO_CGROUP, b.auto_cgroup):  # one cgroup per container
            lx["cgroupsPath"] = b.auto_cgroup = f"/{CGROUP_PARENT}/{cid}"
        if lx.get("cgroupsPath"):
            self.cgpaths[cid] = lx["cgroupsPath"]
        b.write()
        return cid

    def _create(self, b: Bundle, cid: str, extra, preexec_fn, cwd, bundle_arg) -> Proc:
        out = open(self.dir / f"{cid}.stdout", "wb+")
        self.files[cid] = self.dir / f"{cid}.stdout"
        try:
            return self.rt("create", "--bundle", bundle_arg or str(b.path), *extra, cid,
                           stdout=out, stderr=out, preexec_fn=preexec_fn, cwd=cwd)
        finally:
            out.close()

    def create_fails(self, b: Bundle, what: str, extra: tuple[str, ...] = ()) -> Proc:
        """create must fail and leave nothing: no container, process, cgroup or mount."""
        cid = self._prepare(b, None)
        mounts = mount_points_under(str(self.s.work))
        p = self._create(b, cid, extra, None, None, None)
        if p.rc == 0:
            self.pids[cid] = self.state(cid).get("pid", 0)
            raise Fail(f"create succeeded although {what}")
        self.assert_gone(cid, "after the failed create")
        now = mount_points_under(str(self.s.work))
        check(now == mounts, f"the failed create left mounts: {sorted(set(now) - set(mounts))}")
        return p

    def output(self, cid: str) -> str:
        return read(self.files[cid], "")

    def start(self, cid: str) -> None:
        p = self.rt("start", cid)
        if p.rc != 0:
            raise Fail(f"start failed: {p}")

    def state(self, cid: str) -> dict:
        p = self.rt("state", cid)
        if p.rc != 0:
            raise Fail(f"state failed: {p}")
        try:
            return json.loads(p.out)
        except ValueError:
            raise Fail(f"state printed no JSON: {p.out[:200]!r}") from None

    def status(self, cid: str) -> str:
        return self.state(cid).get("status", "")

    def kill(self, cid: str, sig: str = "KILL") -> None:
        p = self.rt("kill", cid, sig)
        if p.rc != 0:
            raise Fail(f"kill failed: {p}")

    def delete(self, cid: str, force: bool = False) -> None:
        p = self.rt("delete", *(["--force"] if force else []), cid)
        if p.rc != 0:
            raise Fail(f"delete failed: {p}")

    def wait_exit(self, cid: str, timeout: float = 10) -> int | None:
        """Wait for the container process to exit; its exit status when it was re-parented
        to us (we are a child subreaper), else None."""
        pid = self.pids[cid]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, st = os.waitpid(pid, os.WNOHANG)
                if got == pid:
                    return os.waitstatus_to_exitcode(st)
            except ChildProcessError:
                if not alive(pid):
                    return None
            time.sleep(0.01)
        raise Fail(f"the container process {pid} did not exit within {timeout}s")

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            last = self.status(cid)
            if last == status:
                return
            time.sleep(0.05)
        raise Fail(f"status stayed {last!r}, expected {status!r}")

    def run(self, b: Bundle, timeout: float = 10) -> Run:
        """create, start, wait for the exit, delete: the whole lifecycle of one container."""
        cid = self.create(b)
        self.start(cid)
        rc = self.wait_exit(cid, timeout)
        out = self.output(cid)
        self.delete(cid)
        return Run(rc, out, b, cid)

    def ok_run(self, b: Bundle, timeout: float = 10) -> Run:
        r = self.run(b, timeout)
        if r.rc not in (0, None):
            raise Fail(f"the container process exited {r.rc}: {r.out.strip()[-300:]}")
        return r

    def expect_error(self, *args: str, what: str) -> Proc:
        p = self.rt(*args)
        check(p.rc != 0, f"`{' '.join(args)}` succeeded although {what}")
        return p

    def skip(self, why: str) -> None:
        raise Skip(why)

    # -- cleanup -----------------------------------------------------------------------------------
    def assert_gone(self, cid: str, when: str) -> None:
        p = self.rt("state", cid)
        check(p.rc != 0, f"the container still exists {when} (state: {p.out.strip()[:100]})")
        left = self.leftover_cgroups(cid)
        check(not left, f"cgroups left {when}: {left}")
        others = {p for c, p in self.pids.items() if c != cid}
        procs = [p for p in our_children() if p not in others]
        check(not procs, f"processes left {when}: {procs}")

    def leftover_cgroups(self, cid: str) -> list[str]:
        cg = self.cgpaths.get(cid)
        if not cg or not cg.startswith(f"/{CGROUP_PARENT}/"):
            return []
        return [p for p in self.s.cg.paths_for(cg) if os.path.isdir(p)]

    def close(self) -> list[str]:
        """Undo everything; return what the runtime left behind (each is a failure)."""
        leaks: list[str] = []
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                leaks.append(f"cleanup: {e}")
        for cid in self.ids:
            p = self.rt("delete", "--force", cid)
            if self.rt("state", cid).rc == 0:
                leaks.append(f"container {cid} survived delete --force ({p.err.strip()[:100]})")
        for pid in our_children():
            leaks.append(f"process {pid} ({read(f'/proc/{pid}/cmdline', '').replace(chr(0), ' ')[:60]})")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01) if leaks else None
        reap_all()
        for cid in self.ids:
            for d in self.leftover_cgroups(cid):
                leaks.append(f"cgroup {d}")
                remove_cgroup(d)
        for mp in reversed(mount_points_under(str(self.dir))):
            leaks.append(f"mount {mp}")
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return leaks


def remove_cgroup(d: str) -> None:
    for p in read(os.path.join(d, "cgroup.procs"), "").split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for _ in range(50):
        try:
            for sub, _, _ in sorted(os.walk(d), key=lambda x: -len(x[0])):
                os.rmdir(sub)
            return
        except OSError:
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# helpers for the cases

def inside_mounts(r: Run | str) -> list[dict]:
    return parse_mountinfo(r.out if isinstance(r, Run) else r)


def find_mount(mounts: list[dict], mp: str) -> dict:
    found = [m for m in mounts if m["mp"] == mp]
    check(bool(found), f"no mount at {mp} inside the container")
    return found[-1]


def kv_lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


class ConsoleSocket:
    """The --console-socket peer: receives the pty master the runtime sends (one SCM_RIGHTS fd)."""

    def __init__(self, t: T) -> None:
        self.path = str(t.dir / "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(15)
        self.master: int | None = None
        self.name = ""
        self.error = ""
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        t.defer(self.close)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                msg, fds, _, _ = socket.recv_fds(conn, 4096, 4)
                self.name = msg.decode(errors="replace")
                if fds:
                    self.master = fds[0]
                    for fd in fds[1:]:
                        os.close(fd)
        except OSError as e:
            self.error = str(e)

    def wait(self) -> int:
        self.thread.join(15)
        check(self.master is not None, f"no pty master arrived on the console socket {self.error}")
        return self.master  # type: ignore[return-value]

    def close(self) -> None:
        self.sock.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


def hook(script: str, *, path: str = "/bin/sh", timeout: int | None = None,
         env: list[str] | None = None) -> dict:
    h = {"path": path, "args": ["sh", "-c", script]}
    if env is not None:
        h["env"] = env
    if timeout is not None:
        h["timeout"] = timeout
    return h


def wait_exists(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise Fail(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.02)
