"""Real engines driving runp: podman (through conmon) and containerd (through the runc v2 shim).

Everything runs in private state: podman gets its own containers.conf (CONTAINERS_CONF) and
storage.conf (CONTAINERS_STORAGE_CONF) with every directory in a temporary one; containerd is
started here with its root, state, sockets and runtime state below a temporary directory and
the CRI plugin disabled. No registry is reachable, so the busybox image is built locally: a
rootfs tarball for `podman import`, and an OCI image layout written by hand for
`ctr images import`.

Every scenario runs against runp and runc (the `runtime` parameter), so the results can be
compared. Debian's packages are installed with apt when missing; a test skips with the reason
when that is impossible (not root, no apt, no network to the mirror).
"""
from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .engines import (CONTAINERD_RUN_DIRS, CTR_IMAGE, CTR_NAMESPACE, IMAGE, RUNP, Containerd, PodmanEnv,  # noqa: F401
                      _which, build_oci_archive, build_rootfs_tar, cgroup_dirs, containers_conf,
                      end_processes_naming, mounts_under, remove_cgroup_tree, remove_private_state,
                      run_files, unmount_all)

RUNTIMES = ("runp", "runc")

# binary -> Debian package
PODMAN_TOOLS = {"podman": "podman", "conmon": "conmon", "runc": "runc"}
CONTAINERD_TOOLS = {"containerd": "containerd", "ctr": "containerd",
                    "containerd-shim-runc-v2": "containerd", "runc": "runc"}


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "integration: drives podman or containerd (installs them)")


# --- installing what the engines need ---------------------------------------------------------

_apt_failure: dict[str, str] = {}


def ensure_tools(tools: dict[str, str]) -> None:
    """Install the Debian packages of the missing binaries, or skip the test saying why."""
    if os.geteuid() != 0:
        pytest.skip("the integration tests run real containers and must run as root")
    missing = sorted({pkg for binary, pkg in tools.items() if not _which(binary)})
    if not missing:
        return
    key = " ".join(missing)
    if key not in _apt_failure:
        _apt_failure[key] = _apt_install(missing)
    if _apt_failure[key]:
        pytest.skip(f"cannot install {key}: {_apt_failure[key]}")
    still = [b for b in tools if not _which(b)]
    if still:
        pytest.skip(f"installed {key} but {', '.join(still)} still missing")



def _apt_install(pkgs: list[str]) -> str:
    """"" on success, else the reason (last line of apt's output)."""
    if not shutil.which("apt-get"):
        return "apt-get is not available"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-q", *pkgs],
                ["sh", "-c", "apt-get update -q && apt-get install -y -q " + " ".join(pkgs)]):
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=900)
        if p.returncode == 0:
            return ""
    lines = p.stdout.decode(errors="replace").strip().splitlines()
    return f"apt-get failed: {lines[-1] if lines else p.returncode}"



@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory) -> Path:
    return build_rootfs_tar(tmp_path_factory.mktemp("image"))


@pytest.fixture(params=RUNTIMES)
def runtime(request) -> str:
    """The OCI runtime under test; runc runs the same scenarios for comparison."""
    if request.param == "runc":
        if not _which("runc"):
            ensure_tools({"runc": "runc"})
    elif not os.access(RUNP, os.X_OK):
        pytest.skip(f"{RUNP} is not installed (run hack/setup)")
    return request.param


def runtime_path(name: str) -> str:
    return RUNP if name == "runp" else (_which("runc") or "runc")


def wait_for(pred, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_in_pty(argv: list[str], env: dict, steps: list[tuple[str, bytes]], timeout: float = 60
               ) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as its stdio (an interactive user). `steps` are
    (text to wait for, bytes to type); returns the exit code and everything printed."""
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    pending = list(steps)
    try:
        while True:
            if pending and pending[0][0].encode() in out:
                os.write(master, pending.pop(0)[1])
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"{argv[0]} on a terminal timed out; it printed {out!r}")
            r, _, _ = select.select([master], [], [], min(left, 0.2))
            if r:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the other side is gone
                    break
                if not data:
                    break
                out += data
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")



@pytest.fixture(scope="session")
def podman_env(tmp_path_factory, rootfs_tar):
    ensure_tools(PODMAN_TOOLS)
    base = Path(tempfile.mkdtemp(prefix="runp-podman-", dir="/tmp"))
    pre_cgroups = set(cgroup_dirs("libpod_parent"))
    # netavark keeps its IPAM database in /run/containers/networks whatever the configuration
    made = [p for p in ("/run/containers", "/run/libpod") if not os.path.exists(p)]
    env = PodmanEnv(base)
    try:
        p = env("import", str(rootfs_tar), IMAGE, check=False)
        if p.returncode != 0:
            pytest.skip(f"podman cannot import an image here: {p.stderr.strip()[-300:]}")
        yield env
    finally:
        env("rm", "--all", "--force", "--time", "0", check=False)
        env("system", "reset", "--force", check=False, timeout=300)
        # conmon runs `podman container cleanup` after a container exits: let those finish
        # (they would recreate directories), then end any that hang
        end_processes_naming(str(base))
        unmount_all(str(base))
        shutil.rmtree(base, ignore_errors=True)
        assert not os.path.exists(base), f"{base} could not be removed"
        if not pre_cgroups:  # podman made /libpod_parent (and its conmon child) for us
            remove_cgroup_tree("libpod_parent")
        for p in made:
            shutil.rmtree(p, ignore_errors=True)


class Podman:
    """`podman` with one runtime; remembers the containers it made, for the leak checks."""

    def __init__(self, env: PodmanEnv, runtime: str) -> None:
        self.env = env
        self.runtime = runtime
        self.runtime_bin = runtime_path(runtime)

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        # podman uses the default runtime (runp, from containers.conf) unless told otherwise
        return self.env(*args, runtime=None if self.runtime == "runp" else self.runtime, **kw)

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self("run", *args, **kw)

    def inspect(self, name: str, fmt: str) -> str:
        return self("inspect", "--format", fmt, name).stdout.strip()

    def status(self, name: str) -> str:
        return self.inspect(name, "{{.State.Status}}")

    def full_id(self, name: str) -> str:
        return self.inspect(name, "{{.Id}}")

    def runtime_ids(self) -> list[str]:
        """Containers the runtime itself knows (podman never passes --root: the default)."""
        p = run_files([self.runtime_bin, "list", "-q"])
        assert p.returncode == 0, f"{self.runtime} list: {p.stderr}"
        return p.stdout.split()

    def cgroup_file(self, cid: str, controller: str, name: str) -> str:
        return (Path("/sys/fs/cgroup") / controller / "libpod_parent" / f"libpod-{cid}" / name
                ).read_text().strip()


@pytest.fixture
def podman(podman_env, runtime):
    pm = Podman(podman_env, runtime)
    yield pm
    ids = pm("ps", "--all", "--quiet", "--no-trunc").stdout.split()
    rm = pm("rm", "--all", "--force", "--time", "0", check=False)
    left = pm("ps", "--all", "--quiet").stdout.split()
    known = [cid for cid in ids if cid in pm.runtime_ids()]
    for cid in known:  # never leave a container running, even when the test fails
        run_files([pm.runtime_bin, "delete", "--force", cid])
    assert not left, f"podman containers left: {left} ({rm.stderr.strip()})"
    assert not known, f"{runtime} still knew {known} after podman rm ({rm.stderr.strip()})"
    for cid in ids:
        assert not cgroup_dirs(f"libpod_parent/libpod-{cid}"), f"cgroup of {cid} left"
        assert not [m for m in mounts_under(str(podman_env.base)) if cid in m], \
            f"mounts of {cid} left"



@pytest.fixture(scope="session")
def containerd(tmp_path_factory, rootfs_tar):
    ensure_tools(CONTAINERD_TOOLS)
    base = Path(tempfile.mkdtemp(prefix="runp-ctd-", dir="/tmp"))  # short: socket paths
    made = [p for p in CONTAINERD_RUN_DIRS if not os.path.exists(p)]
    pre_cgroups = set(cgroup_dirs(CTR_NAMESPACE))
    d = Containerd(base)
    try:
        try:
            d.start()
        except RuntimeError as e:
            pytest.skip(f"containerd cannot run here: {e}")
        archive = build_oci_archive(rootfs_tar, base / "busybox-oci.tar")
        d.ctr("images", "import", str(archive))
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            for cid in d.ctr("containers", "list", "--quiet", check=False).stdout.split():
                _ctr_remove(d, cid)
            d.ctr("images", "rm", CTR_IMAGE, check=False)
        d.stop()
        assert remove_private_state(str(base), made), f"{base} could not be removed"
        if not pre_cgroups:
            remove_cgroup_tree(CTR_NAMESPACE)


def _ctr_remove(d: Containerd, cid: str) -> None:
    d.ctr("tasks", "kill", "--all", "--signal", "KILL", cid, check=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if d.ctr("tasks", "delete", "--force", cid, check=False).returncode == 0:
            break
        if "not found" in d.ctr("tasks", "list", check=False).stdout:
            break
        if cid not in d.ctr("tasks", "list", "--quiet", check=False).stdout.split():
            break
        time.sleep(0.2)
    d.ctr("containers", "delete", cid, check=False)


class Ctr:
    """`ctr` against our containerd, with the runc v2 shim running `runtime` (its BinaryName
    option, set by --runc-binary) and that runtime's state in a private --runc-root."""

    def __init__(self, d: Containerd, runtime: str) -> None:
        self.d = d
        self.runtime = runtime
        self.binary = runtime_path(runtime)
        self.runtime_root = str(d.base / f"{runtime}-state")

    def __call__(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.d.ctr(*args, **kw)

    def run_args(self) -> list[str]:
        return ["--runc-binary", self.binary, "--runc-root", self.runtime_root]

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """`ctr run [--runc-binary RUNTIME ...] ARGS` (ARGS: flags, image, id, command)."""
        return self("run", *self.run_args(), *args, **kw)

    def runtime_cmd(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        """The runtime called exactly as the shim calls it (root, JSON log)."""
        root = os.path.join(self.runtime_root, CTR_NAMESPACE)
        log = self.d.base / f"{self.runtime}-direct.log"
        return run_files([self.binary, "--root", root, "--log", str(log), "--log-format", "json",
                          *args], input=input)

    def task_status(self, cid: str) -> str:
        for line in self("tasks", "list").stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] == cid:
                return f[-1]
        return ""

    def task_pid(self, cid: str) -> int:
        for line in self("tasks", "list").stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] == cid:
                return int(f[1])
        raise AssertionError(f"no task {cid}")


@pytest.fixture
def ctr(containerd, runtime):
    c = Ctr(containerd, runtime)
    made_before = set(containerd.ctr("containers", "list", "--quiet").stdout.split())
    yield c
    ids = set(containerd.ctr("containers", "list", "--quiet", check=False).stdout.split())
    for cid in ids - made_before:
        _ctr_remove(containerd, cid)
    left = containerd.ctr("containers", "list", "--quiet", check=False).stdout.split()
    assert not left, f"containerd containers left: {left}"
    state = os.path.join(c.runtime_root, CTR_NAMESPACE)
    if os.path.isdir(state):
        known = run_files([c.binary, "--root", state, "list", "-q"]).stdout.split()
        assert not known, f"{runtime} still knows {known}"
    for cid in ids:
        assert not cgroup_dirs(f"{CTR_NAMESPACE}/{cid}"), f"cgroup of {cid} left"
    assert not [m for m in mounts_under(str(containerd.base)) if "/rootfs" in m], \
        "container rootfs mounts left"
    wait_for(lambda: not containerd.shims(), 10, "the shims to exit")
