"""Kubernetes' path: containerd 1.6's CRI plugin with runp as a runtime handler, driven by the
project's own CRI client (cri_client.py) as a kubelet drives it: RunPodSandbox, CreateContainer
with resources and a securityContext, StartContainer, ExecSync, the container log, StopContainer,
RemoveContainer, StopPodSandbox, RemovePodSandbox. Each scenario also runs with runc as the
handler, for comparison.

The handlers are configured as the README's CRI section writes them (runtime_type
io.containerd.runc.v2, options BinaryName), so that configuration is exercised. Pods use the host
network (no CNI here); the pause image is the busybox image with `sleep` as its command.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from .conftest import CONTAINERD_TOOLS, ensure_tools, wait_for
from .engines import (CONTAINERD_RUN_DIRS, CTR_IMAGE, RUNP, Containerd, _which, build_oci_archive,
                      cgroup_dirs, mounts_under, remove_cgroup_tree, remove_private_state,
                      run_files)

pytestmark = pytest.mark.integration

PAUSE_IMAGE = "localhost/runp-pause:1"
CRI_NAMESPACE = "k8s.io"  # the containerd namespace of everything the CRI plugin makes
CGROUP_PARENT = f"runp-cri-{os.getpid()}"


class CriEnv:
    """A containerd with the CRI plugin on and the handlers runp and runc; a client to it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.binaries = {"runp": RUNP, "runc": _which("runc") or "/usr/sbin/runc"}
        self.d = Containerd(base, self.binaries, PAUSE_IMAGE)
        self.client = None

    def import_images(self, rootfs_tar: Path) -> None:
        for name, cmd in ((PAUSE_IMAGE, ("sleep", "2147483647")), (CTR_IMAGE, ("sh",))):
            archive = build_oci_archive(rootfs_tar, self.base / "image.tar", name, cmd)
            p = run_files(["ctr", "--address", self.d.address, "--namespace", CRI_NAMESPACE,
                           "images", "import", str(archive)])
            assert p.returncode == 0, f"ctr images import {name}: {p.stderr.strip()}"
            self.client.wait_image(name)

    def runtime_ids(self, handler: str) -> list[str]:
        """What the handler's runtime itself still knows (the shim's --root)."""
        root = self.base / f"{handler}-cri-state" / CRI_NAMESPACE
        if not root.is_dir():
            return []
        p = run_files([self.binaries[handler], "--root", str(root), "list", "-q"])
        assert p.returncode == 0, p.stderr
        return p.stdout.split()


@pytest.fixture(scope="module")
def cri(rootfs_tar):
    ensure_tools(CONTAINERD_TOOLS)
    pytest.importorskip("grpc", reason="grpcio (the test extra) is not installed")
    from .cri_client import CriClient
    base = Path(tempfile.mkdtemp(prefix="runp-cri-", dir="/tmp"))  # short: socket paths
    made = [p for p in CONTAINERD_RUN_DIRS if not os.path.exists(p)]
    env = CriEnv(base)
    try:
        try:
            env.d.start()
        except RuntimeError as e:
            pytest.skip(f"containerd cannot run here: {e}")
        env.client = CriClient(env.d.address)
        env.import_images(rootfs_tar)
        yield env
    finally:
        if env.client is not None:
            env.client.remove_everything()
            env.client.close()
        env.d.stop()
        assert remove_private_state(str(base), made), f"{base} could not be removed"
        remove_cgroup_tree(CGROUP_PARENT)


@pytest.fixture(params=("runp", "runc"))
def handler(request, cri):
    """The runtime handler under test; afterwards nothing of its pods may be left."""
    h = request.param
    if h == "runp" and not os.access(RUNP, os.X_OK):
        pytest.skip(f"{RUNP} is not installed (run hack/setup)")
    yield h
    problems = cri.client.remove_everything()
    assert not problems, problems
    assert not cri.runtime_ids(h), f"{h} still knows {cri.runtime_ids(h)}"
    left = [e.path for d in cgroup_dirs(CGROUP_PARENT) for e in os.scandir(d) if e.is_dir()]
    assert not left, f"pod cgroups left: {left}"
    assert not [m for m in mounts_under(str(cri.base)) if "/rootfs" in m], "rootfs mounts left"
    wait_for(lambda: not cri.d.shims(), 10, "the shims to exit")


def _pod(cri, handler: str, name: str):
    from .cri_client import pod_config
    config = pod_config(f"{name}-{handler}", f"uid-{name}-{handler}",
                        str(cri.base / "pods" / f"{name}-{handler}"), f"/{CGROUP_PARENT}")
    return cri.client.run_pod_sandbox(config, handler), config


def _cgroup_file(cid: str, controller: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{controller}/{CGROUP_PARENT}/{cid}/{name}") as f:
        return f.read().strip()


def test_pod_lifecycle_with_resources_and_security_context(cri, handler):
    from .cri_client import CONTAINER_EXITED, CONTAINER_RUNNING, container_config
    c = cri.client
    pod, pod_cfg = _pod(cri, handler, "life")
    cfg = container_config(
        "app", CTR_IMAGE, ["sh", "-c", "echo started; echo to-stderr >&2; exec sleep 1000"],
        "app.log",
        resources={"memory_limit_in_bytes": 64 << 20, "cpu_shares": 512,
                   "cpu_period": 100000, "cpu_quota": 50000},
        security={"run_as_user": {"value": 1000}, "run_as_group": {"value": 1000},
                  "readonly_rootfs": True, "no_new_privs": True,
                  "capabilities": {"drop_capabilities": ["ALL"],
                                   "add_capabilities": ["NET_BIND_SERVICE"]}})
    cid = c.create_container(pod, cfg, pod_cfg)
    c.start_container(cid)
    assert c.container_status(cid)["status"]["state"] == CONTAINER_RUNNING

    # resources reached the container's cgroup (cgroupfs: PARENT/ID)
    assert _cgroup_file(cid, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert _cgroup_file(cid, "cpu", "cpu.shares") == "512"
    assert _cgroup_file(cid, "cpu", "cpu.cfs_quota_us") == "50000"

    # the securityContext, seen from inside (ExecSync runs with the container's process spec)
    r = c.exec_sync(cid, ["sh", "-c", "id; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/1/status; "
                                      "touch /x 2>&1; exit 3"])
    out = r["stdout"].decode()
    assert r["exit_code"] == 3, r
    assert "uid=1000(user) gid=1000(user)" in out
    assert "CapBnd:\t0000000000000400" in out  # CAP_NET_BIND_SERVICE (10) only
    assert "CapEff:\t0000000000000000" in out  # uid 1000 without ambient capabilities
    assert "NoNewPrivs:\t1" in out
    assert "Read-only file system" in out

    # the log: the CRI format, "TIMESTAMP STREAM P|F TEXT" per line
    log = cri.base / "pods" / f"life-{handler}" / "app.log"
    wait_for(lambda: log.exists() and "to-stderr" in log.read_text(), what="the container log")
    lines = [line.split(" ", 3) for line in log.read_text().splitlines()]
    # (the two streams are copied by separate goroutines: either line may come first)
    assert sorted((s, t, m) for _, s, t, m in lines) == [("stderr", "F", "to-stderr"),
                                                         ("stdout", "F", "started")]

    c.stop_container(cid, timeout=0)
    st = c.container_status(cid)["status"]
    assert st["state"] == CONTAINER_EXITED and st.get("exit_code") == 137, st
    c.remove_container(cid)
    assert cid not in [x["id"] for x in c.list_containers()]
    assert cid not in cri.runtime_ids(handler)
    c.stop_pod_sandbox(pod)
    c.remove_pod_sandbox(pod)
    assert pod not in [p["id"] for p in c.list_pod_sandboxes()]
    assert not cri.runtime_ids(handler)


def test_stop_pod_with_running_container(cri, handler):
    """StopPodSandbox ends a running app container and the pause container (SIGKILL), then
    RemovePodSandbox removes both: what the pod-teardown time of hack/bench measures."""
    from .cri_client import CONTAINER_EXITED, container_config
    c = cri.client
    pod, pod_cfg = _pod(cri, handler, "stop")
    cid = c.create_container(pod, container_config("app", CTR_IMAGE, ["sleep", "1000"], "app.log"),
                             pod_cfg)
    c.start_container(cid)
    assert len(cri.runtime_ids(handler)) == 2  # the pause container and the app
    c.stop_pod_sandbox(pod)
    assert c.container_status(cid)["status"]["state"] == CONTAINER_EXITED
    c.remove_pod_sandbox(pod)
    assert not cri.runtime_ids(handler)


def test_exec_sync_exit_code_and_failure(cri, handler):
    from .cri_client import CriError, container_config
    c = cri.client
    pod, pod_cfg = _pod(cri, handler, "exec")
    cid = c.create_container(pod, container_config("app", CTR_IMAGE, ["sleep", "1000"], "app.log"),
                             pod_cfg)
    c.start_container(cid)
    r = c.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r["exit_code"], r["stdout"], r["stderr"]) == (7, b"out\n", b"err\n")
    with pytest.raises(CriError) as e:
        c.exec_sync(cid, ["no-such-command"])
    assert "no-such-command" in str(e.value)
    c.stop_pod_sandbox(pod)
    c.remove_pod_sandbox(pod)


def test_protobuf_round_trip():
    """The hand-written wire format against known encodings (protobuf's documented examples)."""
    from .cri_client import ContainerStatus, ExecSyncResponse, PodSandboxConfig, decode, encode
    assert encode({"a": (1, "int")}, {"a": 150}) == b"\x08\x96\x01"
    assert encode({"s": (2, "string")}, {"s": "testing"}) == b"\x12\x07testing"
    assert encode({"a": (1, "int")}, {"a": -1}) == b"\x08" + b"\xff" * 9 + b"\x01"
    cfg = {"metadata": {"name": "p", "uid": "u", "namespace": "n", "attempt": 2},
           "labels": {"k": "v", "x": "y"}, "linux": {"cgroup_parent": "/a",
           "security_context": {"namespace_options": {"network": 2, "pid": 1, "ipc": 0}}}}
    assert decode(PodSandboxConfig, encode(PodSandboxConfig, cfg)) == cfg
    assert decode(ExecSyncResponse, b"\x18" + b"\xff" * 9 + b"\x01") == {"exit_code": -1}
    # unknown fields (here 99, a varint) are skipped
    assert decode(ContainerStatus, b"\x98\x06\x05" + b"\x0a\x01x") == {"id": "x"}

