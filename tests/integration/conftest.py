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

import hashlib
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
RUNP = os.environ.get("RUNP") or str(TOP / ".venv" / "bin" / "runp")
RUNTIMES = ("runp", "runc")
IMAGE = "localhost/busybox:latest"          # podman
CTR_IMAGE = "docker.io/library/busybox:latest"  # containerd
CTR_NAMESPACE = "runp-it"

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


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/usr/libexec/podman")


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


# --- images -------------------------------------------------------------------------------------

def build_rootfs_tar(dest: Path) -> Path:
    """A busybox root filesystem as an uncompressed tarball (what `podman import` takes and an
    OCI layer is). /run/marker and /var/tmp/marker let tests see tmpcopyup at work."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    root = dest / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "var/tmp", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, check=True).stdout.split()
    for a in applets:
        name = a.decode()
        if name != "busybox" and "/" not in name:
            (root / "bin" / name).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "user:x:1000:1000:user:/home/user:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    (root / "run" / "marker").write_text("copied up\n")
    (root / "var" / "tmp" / "marker").write_text("copied up\n")
    (root / "tmp").chmod(0o1777)
    (root / "var" / "tmp").chmod(0o1777)
    out = dest / "busybox-rootfs.tar"
    with tarfile.open(out, "w") as t:
        for entry in sorted(root.iterdir()):
            t.add(entry, arcname=entry.name)
    shutil.rmtree(root)
    return out


def build_oci_archive(layer_tar: Path, out: Path, name: str = CTR_IMAGE) -> Path:
    """An OCI image layout in a tarball: oci-layout, index.json, and three blobs (the layer,
    the image config, the manifest), for `ctr images import`."""
    layer = layer_tar.read_bytes()

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
        "history": [{"created_by": "runp integration tests"}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}],
    }).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": "latest"}}],
    }).encode()
    with tarfile.open(out, "w") as t:
        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for data in (layer, config, manifest):
            add("blobs/sha256/" + digest(data).split(":")[1], data)
    return out


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


# --- leftovers ----------------------------------------------------------------------------------

def mounts_under(*paths: str) -> list[str]:
    """Mount points at or below any of the paths (from /proc/self/mountinfo)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if any(mp == p or mp.startswith(p.rstrip("/") + "/") for p in paths):
                out.append(mp)
    return out


def unmount_all(*paths: str) -> None:
    for mp in sorted(mounts_under(*paths), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def cgroup_dirs(relative: str) -> list[str]:
    """Directories named `relative` (e.g. "libpod_parent/libpod-ID") in any hierarchy."""
    out = []
    base = Path("/sys/fs/cgroup")
    for h in [base, *base.iterdir()] if base.is_dir() else []:
        p = h / relative.lstrip("/")
        if p.is_dir():
            out.append(str(p))
    return out


def remove_cgroup_tree(relative: str) -> None:
    """rmdir `relative` (and anything empty below it) in every hierarchy, deepest first."""
    for d in cgroup_dirs(relative):
        for sub, dirs, _ in sorted(os.walk(d), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(sub)
            except OSError:
                pass


def processes_naming(text: str) -> list[int]:
    """Pids whose command line contains `text` (a private temporary path of ours)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def end_processes_naming(text: str, grace: float = 20.0) -> None:
    """Wait for the processes started for a private set-up to exit; SIGKILL stragglers."""
    deadline = time.monotonic() + grace
    while processes_naming(text) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in processes_naming(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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


def run_files(argv: list[str], env: dict | None = None, timeout: float = 120,
              input: bytes | None = None) -> subprocess.CompletedProcess:
    """subprocess.run with temporary files for stdout/stderr: a detached container (or conmon)
    may inherit them and would keep a pipe open long after the command returned."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, env=env, stdout=out, stderr=err, timeout=timeout,
                           input=input, stdin=None if input is not None else subprocess.DEVNULL)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return p


# --- podman -------------------------------------------------------------------------------------

def containers_conf(runp: str, engine_extra: str = "") -> str:
    """containers.conf: runp the default runtime (with JSON logs from conmon), runc beside it,
    the cgroupfs manager, no network; `engine_extra`: more lines for [engine]."""
    runc = _which("runc") or "/usr/sbin/runc"
    return f"""\
[containers]
# root here lacks CAP_SYS_RESOURCE and has a hard nofile limit of 20000 (GUIDE.md section 5)
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"

[engine]
runtime = "runp"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "youki", "krun", "runp"]
cgroup_manager = "cgroupfs"
events_logger = "file"
{engine_extra}
[engine.runtimes]
runp = ["{runp}"]
runc = ["{runc}"]
"""


class PodmanEnv:
    """A private podman set-up: containers.conf + storage.conf in `base`, runp as the default
    runtime, runc configured next to it (`podman --runtime runc`)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.conf = base / "containers.conf"
        self.storage_conf = base / "storage.conf"
        self.conf.write_text(containers_conf(RUNP, f"""\
tmp_dir = "{base}/tmp"
volume_path = "{base}/volumes"
""") + f"""
[network]
network_config_dir = "{base}/networks"
""")
        self.storage_conf.write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{base}/graph"
runroot = "{base}/run"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf),
                        CONTAINERS_STORAGE_CONF=str(self.storage_conf))
        self.env.pop("CONTAINER_HOST", None)

    def __call__(self, *args: str, runtime: str | None = None, check: bool = True,
                 timeout: float = 120, input: bytes | None = None) -> subprocess.CompletedProcess:
        argv = ["podman", *(["--runtime", runtime] if runtime else []), *args]
        p = run_files(argv, self.env, timeout, input)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
        return p


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


# --- containerd ---------------------------------------------------------------------------------

class Containerd:
    """A containerd daemon of our own: config, root, state, sockets in `base`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.address = str(base / "containerd.sock")
        self.config = base / "config.toml"
        # The CRI plugin needs networking and images from registries: off. So are the
        # snapshotters that cannot work here and the OTLP tracing plugins.
        self.config.write_text(f"""\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.address}"

[ttrpc]
  address = "{self.address}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
""")
        self.proc: subprocess.Popen | None = None
        self.log = base / "containerd.log"

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["containerd", "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log.read_text()[-500:]}")
            if os.path.exists(self.address) and \
                    subprocess.run(["ctr", "--address", self.address, "version"],
                                   capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("containerd did not come up in 30 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def shims(self) -> list[int]:
        """Pids of runc v2 shims started by this containerd (their command line names it)."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and self.address.encode() in cmd:
                out.append(int(d.name))
        return out

    def argv(self, *args: str) -> list[str]:
        """The ctr command line: our socket and namespace, and the IO fifos in our directory
        (ctr's default is /run/containerd/fifo)."""
        args_l = list(args)
        for cmd in (["run"], ["tasks", "exec"], ["tasks", "start"]):
            if args_l[:len(cmd)] == cmd:
                args_l[len(cmd):len(cmd)] = ["--fifo-dir", str(self.base / "fifo")]
                break
        return ["ctr", "--address", self.address, "--namespace", CTR_NAMESPACE, *args_l]

    def ctr(self, *args: str, check: bool = True, timeout: float = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        argv = self.argv(*args)
        p = run_files(argv, None, timeout, input)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return p


@pytest.fixture(scope="session")
def containerd(tmp_path_factory, rootfs_tar):
    ensure_tools(CONTAINERD_TOOLS)
    base = Path(tempfile.mkdtemp(prefix="runp-ctd-", dir="/tmp"))  # short: socket paths
    # the 1.6 shim puts its sockets in /run/containerd/s whatever the config says
    made = [p for p in ("/run/containerd", "/run/containerd/s", "/run/containerd/fifo")
            if not os.path.exists(p)]
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
        end_processes_naming(str(base), grace=5)  # shims of containers we could not delete
        unmount_all(str(base))
        shutil.rmtree(base, ignore_errors=True)
        assert not os.path.exists(base), f"{base} could not be removed"
        for p in reversed(made):
            try:
                os.rmdir(p)
            except OSError:
                pass
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
