"""The engines of the integration tests, set up in private state, without pytest: podman with its
own containers.conf and storage.conf, containerd with its own config, root, state and sockets, and
the busybox images they run (no registry is reachable: built here). tests/integration/conftest.py
makes fixtures of them; hack/bench --clients times the same set-ups.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
RUNP = os.environ.get("RUNP") or str(TOP / ".venv" / "bin" / "runp")
IMAGE = "localhost/busybox:latest"          # podman
CTR_IMAGE = "docker.io/library/busybox:latest"  # containerd
CTR_NAMESPACE = "runp-it"


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/usr/libexec/podman")



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


def build_oci_archive(layer_tar: Path, out: Path, name: str = CTR_IMAGE,
                      cmd: tuple[str, ...] = ("sh",)) -> Path:
    """An OCI image layout in a tarball: oci-layout, index.json, and three blobs (the layer,
    the image config, the manifest), for `ctr images import`; `cmd`: the image's Cmd."""
    layer = layer_tar.read_bytes()

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
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




def remove_private_state(base: str, made: list[str]) -> bool:
    """After an engine in `base` has stopped: end what is left of its processes (shims of
    containers that could not be deleted), unmount and remove `base`, then rmdir the host
    directories it needed (`made`: those that did not exist before, removed when empty).
    Returns whether `base` is gone."""
    end_processes_naming(base, grace=5)
    unmount_all(base)
    shutil.rmtree(base, ignore_errors=True)
    for p in reversed(made):
        try:
            os.rmdir(p)
        except OSError:
            pass
    return not os.path.exists(base)


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




# --- containerd ---------------------------------------------------------------------------------

# the 1.6 shim puts its sockets in /run/containerd/s whatever the config says
CONTAINERD_RUN_DIRS = ("/run/containerd", "/run/containerd/s", "/run/containerd/fifo")


class Containerd:
    """A containerd daemon of our own: config, root, state, sockets in `base`.

    Without `cri_runtimes` the CRI plugin is off (it wants networking and registries). With
    them, it is on, each name a runtime handler as the README's CRI configuration writes it
    (runtime_type io.containerd.runc.v2, options BinaryName), runp's state below `base` (Root);
    pods must use the host network (no CNI here) and the pause image `sandbox_image` must have
    been imported into the k8s.io namespace."""

    def __init__(self, base: Path, cri_runtimes: dict[str, str] | None = None,
                 sandbox_image: str = "") -> None:
        self.base = base
        self.address = str(base / "containerd.sock")
        self.config = base / "config.toml"
        disabled = [] if cri_runtimes else ['"io.containerd.grpc.v1.cri"']
        # The snapshotters that cannot work here and the OTLP tracing plugins are off too.
        disabled += [f'"io.containerd.{p}"' for p in (
            "snapshotter.v1.btrfs", "snapshotter.v1.zfs", "snapshotter.v1.devmapper",
            "snapshotter.v1.aufs", "internal.v1.opt", "tracing.processor.v1.otlp",
            "internal.v1.tracing")]
        cri = ""
        if cri_runtimes:
            # restrict_oom_score_adj: root lacks CAP_SYS_RESOURCE on this VM, and a pod's
            # oomScoreAdj of -998 would fail for every runtime (GUIDE.md section 8). Port 0: a
            # free port for the streaming server (never used: ExecSync needs none), so that
            # several of these daemons can run at once.
            plugin = '[plugins."io.containerd.grpc.v1.cri"'
            cri = f"""
{plugin}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
{plugin}.cni]
  bin_dir = "{base}/cni/bin"
  conf_dir = "{base}/cni/net.d"
"""
            for name, binary in cri_runtimes.items():
                cri += f"""{plugin}.containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
{plugin}.containerd.runtimes.{name}.options]
  BinaryName = "{binary}"
  Root = "{base}/{name}-cri-state"
"""
        self.config.write_text(f"""\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = [{", ".join(disabled)}]

[grpc]
  address = "{self.address}"

[ttrpc]
  address = "{self.address}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
{cri}""")
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

