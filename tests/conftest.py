"""Shared fixtures: a busybox rootfs, bundles, and a runp runner with its own --root.

Every test that makes containers gets a fresh state root; at teardown every container left in
it is force-deleted and the test fails if anything (state dir, process) survives.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

RUNP = os.environ.get("RUNP") or str(TOP / ".venv" / "bin" / "runp")
BUSYBOX = "/bin/busybox"
APPLETS = ("sh ls cat id hostname mount echo true false sleep ps grep env pwd mkdir readlink "
           "uname wc touch rm ln stat head tail tr cut sort test kill mknod chmod printf seq "
           "umask ulimit dd nproc yes date df mountpoint nc ip ifconfig wget xargs").split()


def build_rootfs(dest: Path) -> Path:
    """A minimal busybox rootfs: /bin/busybox and its applets, /etc/passwd, empty mount points."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for a in APPLETS:
        link = dest / "bin" / a
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "user:x:1000:1000:user:/home/user:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    (dest / "tmp").chmod(0o1777)
    return dest


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> Path:
    return build_rootfs(tmp_path_factory.mktemp("rootfs-template") / "rootfs")


def base_config(args: list[str] | None = None) -> dict:
    """`runp spec` without a terminal: what most tests start from."""
    from runtime.spec import default_spec
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args or ["true"]
    cfg["root"]["readonly"] = False
    return cfg


class Bundle:
    def __init__(self, path: Path, template: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        shutil.copytree(template, self.rootfs, symlinks=True)
        self.config = base_config()

    def write(self, config: dict | None = None) -> "Bundle":
        if config is not None:
            self.config = config
        (self.path / "config.json").write_text(json.dumps(self.config))
        return self

    def set_args(self, *args: str) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self.write()


@pytest.fixture
def bundle(tmp_path, rootfs_template) -> Bundle:
    b = Bundle(tmp_path / "bundle", rootfs_template)
    b.path.mkdir(exist_ok=True)
    return b.write()


@pytest.fixture
def make_bundle(tmp_path, rootfs_template):
    n = [0]

    def make() -> Bundle:
        n[0] += 1
        p = tmp_path / f"bundle{n[0]}"
        p.mkdir()
        return Bundle(p, rootfs_template).write()
    return make


class Runp:
    """Runs the runp binary with a private --root; remembers nothing but the root."""

    def __init__(self, root: Path, binary: str = RUNP) -> None:
        self.root = root
        self.binary = binary

    def cmd(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None,
                 **kw) -> subprocess.CompletedProcess:
        # Files, not pipes: a created or detached container inherits runp's stdio and would
        # keep a pipe open long after runp exits (as with runc).
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(self.cmd(*args), stdout=out, stderr=err, timeout=timeout,
                               input=input, **kw)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"runp {' '.join(args)} exited {p.returncode}: "
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def ids(self) -> list[str]:
        return self("list", "-q").stdout.decode().split()


# where other checkouts' suites and the engines they start mount things of their own (pytest's
# and the conformance suite's temp dirs, podman's and containerd's state): a whole-host
# comparison that counted those would fail whenever two suites run at once
_OTHERS_MOUNT_UNDER = ("/tmp/", "/run/netns/", "/run/containerd/", "/run/user/",
                       "/var/lib/containers/", "/var/lib/containerd/", "/run/containers/")


def host_mounts(mine: Path) -> list[str]:
    """The host's mount table (mount point, source, type, options of each line of
    /proc/self/mountinfo), leaving out mounts below other suites' places but never one below
    `mine` (the test's own temp dir, where a leak of its container would show)."""
    mine_s = str(mine).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4]
            if not (point + "/").startswith(mine_s) and point.startswith(_OTHERS_MOUNT_UNDER):
                continue
            sep = fields.index("-")
            out.append(" ".join([point, fields[3], fields[5], *fields[sep + 1:]]))
    return sorted(out)


def proc_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def mounted_with(path: Path) -> set[str]:
    """Which of nodev and nosuid the file system holding path is mounted with (statvfs).
    Device nodes made in a bundle there cannot be opened, and file capabilities and setuid bits
    are ignored at exec: a hardened /tmp (pytest's basetemp) is mounted so, as are the VMs'."""
    flags = os.statvfs(path).f_flag
    return {name for name, bit in (("nodev", os.ST_NODEV), ("nosuid", os.ST_NOSUID)) if flags & bit}


def cgroup_roots() -> list[str]:
    """Every cgroup hierarchy root the runtime may put a container in: the v1 hierarchies and
    the cgroup2 tree (all of it on a pure v2 host, the unified one on a hybrid host)."""
    from runtime.linux import cgroups as cg
    from runtime.linux.cgroups import common
    mode = cg.detect()
    roots = [m for m, _, _ in common.v1_mounts()] if mode in ("v1", "hybrid") else []
    if mode == "v2":
        roots.append(common.CGROUP_ROOT)
    elif mode == "hybrid":
        roots.append(common.UNIFIED_HYBRID)
    return roots


def make_traversable(path: Path) -> None:
    """o+x on every parent, so root of a user namespace (an unprivileged host uid) can reach
    the bundle, as it must for runc too."""
    for p in [path, *path.parents]:
        if str(p) in ("/", "/tmp"):
            break
        p.chmod(p.stat().st_mode | 0o011)


def force_delete(cmd: list[str], cid: str, attempts: int = 40) -> None:
    """`delete -f` until the runtime no longer knows the container. runc 1.1.5's delete fails
    (keeping its state and cgroups) when the cgroup is still busy with exiting processes, as
    seen under a loaded full suite; a test must not leave that behind."""
    import time
    p = None
    for _ in range(attempts):
        p = subprocess.run(cmd + ["delete", "-f", cid], capture_output=True, timeout=60)
        if subprocess.run(cmd + ["state", cid], capture_output=True, timeout=30).returncode != 0:
            return
        time.sleep(0.25)
    raise AssertionError(f"{cmd[0]} delete -f {cid} left the container behind: "
                         f"{p.stderr.decode(errors='replace') if p else ''}")


def run_container(cmd: list[str], bundle, *global_flags: str,
                  prefix: str = "t") -> subprocess.CompletedProcess:
    """`run` the bundle in the foreground with any runc-compatible runtime (`cmd` ends in its
    --root); the container is gone afterwards whatever happened."""
    cid = new_id(prefix)
    try:
        return subprocess.run(cmd[:1] + list(global_flags) + cmd[1:]
                              + ["run", "-b", str(bundle.path), cid],
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        force_delete(cmd, cid)


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def containers_in(root) -> list[str]:
    """What is in a state root but runp's own cache of compiled seccomp filters."""
    from runtime.state import CACHE_DIR
    return [n for n in os.listdir(root) if n != CACHE_DIR] if os.path.exists(root) else []


@pytest.fixture
def runp(tmp_path):
    root = tmp_path / "state"
    r = Runp(root)
    yield r
    leftovers = []
    if root.exists():
        for cid in containers_in(root):
            leftovers.append(cid)
            try:
                pid = json.loads((root / cid / "state.json").read_text()).get("pid", 0)
            except (OSError, ValueError):
                pid = 0
            subprocess.run(r.cmd("delete", "--force", cid), capture_output=True, timeout=30)
            if pid and Path(f"/proc/{pid}").exists():
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat[stat.rfind(")") + 2] != "Z":
                    os.kill(pid, 9)
        remaining = containers_in(root)
        assert not remaining, f"containers survived force delete: {remaining}"


@pytest.fixture(scope="session")
def rootless_user():
    """An ordinary user with a subuid/subgid range and an XDG_RUNTIME_DIR (tests/rootless_user.py),
    made once per session and removed at its end, pass or fail."""
    from rootless_user import TestUser, missing_tools
    if os.geteuid() != 0:
        pytest.skip("making a test user needs root")
    missing = missing_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: Debian's passwd and uidmap packages (hack/setup)")
    user = TestUser()
    try:
        user.create()
        yield user
    finally:
        user.remove()


@pytest.fixture
def cid() -> str:
    return new_id()


def deep(cfg: dict) -> dict:
    return copy.deepcopy(cfg)


HOST_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
                "/dev/ptmx")


def _host_device_stats() -> dict:
    out = {}
    for p in HOST_DEVICES:
        try:
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev)
        except OSError:
            out[p] = None
    return out


@pytest.fixture(autouse=True)
def not_a_subreaper_afterwards():
    """pytest must not stay a child subreaper after a test: runtime.Container.create makes its
    caller one (test_library_api calls it in-process), and then every container init and
    exec'd process that outlives its runtime command (runc's too) is re-parented to pytest,
    which never reaps them. A dying pid-namespace init waits for those zombies
    (zap_pid_ns_processes), so a later `runc delete -f` fails with "container init still
    running" and leaves the container's cgroups behind (seen in the full suite)."""
    yield
    from runtime.linux import sys as lsys
    lsys.prctl(lsys.PR_SET_CHILD_SUBREAPER, 0)


@pytest.fixture(autouse=True)
def host_devices_untouched():
    """No test may change the host's device nodes (a runtime that chmods or replaces the host's
    /dev/null through a container path is a container escape)."""
    before = _host_device_stats()
    yield
    after = _host_device_stats()
    changed = {p: (before[p], after[p]) for p in before if before[p] != after[p]}
    assert not changed, f"host device nodes changed: {changed}"
