"""podman (cgroup_manager = "systemd") and containerd (the runc shim's SystemdCgroup option)
driving runp on a host where systemd is PID 1: every container is a transient scope that
systemd knows, active while the container runs and gone once it is removed.

Runs only where systemd is PID 1: inside the VM that tests/test_systemd_vm.py boots. The
engines and their private set-ups are conftest.py's (podman_env, containerd).
"""
from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from runtime.linux.cgroups import systemd as sd

from .conftest import CTR_IMAGE, IMAGE, RUNP, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sd.running(), reason="systemd is not PID 1 here "
                                 "(tests/test_systemd_vm.py runs these in a VM)")]


def show(unit: str, *names: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, *(f"--property={n}" for n in names)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_podman_with_the_systemd_cgroup_manager(podman_env):
    """podman passes --systemd-cgroup and cgroupsPath machine.slice:libpod:<id> (and puts
    conmon in a scope of its own): run, exec, stop, rm."""
    pm = lambda *a, **kw: podman_env("--cgroup-manager", "systemd", *a, **kw)  # noqa: E731
    name = f"sd-{uuid.uuid4().hex[:8]}"
    try:
        p = pm("run", "--rm", IMAGE, "sh", "-c", "cat /proc/self/cgroup")
        assert p.stdout.strip() == "0::/", p.stdout  # a cgroup namespace rooted at its scope
        pm("run", "-d", "--name", name, "--memory", "64m", IMAGE, "sleep", "1000")
        cid = pm("inspect", "--format", "{{.Id}}", name).stdout.strip()
        unit = f"libpod-{cid}.scope"
        p = show(unit, "ActiveState", "Delegate", "Slice", "MemoryMax")
        assert p == {"ActiveState": "active", "Delegate": "yes", "Slice": "machine.slice",
                     "MemoryMax": str(64 << 20)}, p
        assert pm("exec", name, "echo", "from exec").stdout == "from exec\n"
        pm("stop", "-t", "2", name)
        pm("rm", name)
        wait_for(lambda: show(unit, "LoadState")["LoadState"] == "not-found", 30,
                 f"{unit} to go")
    finally:
        pm("rm", "--force", "--time", "0", name, check=False)


def test_containerd_with_systemd_cgroup(containerd):
    """ctr's --runc-systemd-cgroup is the shim's SystemdCgroup option (what the CRI plugin
    sets with SystemdCgroup = true), here with a cgroupsPath of the form the CRI plugin
    makes: run, exec, kill, delete."""
    cid = f"sd-{uuid.uuid4().hex[:8]}"
    pod_slice = f"kubepods-besteffort-pod{uuid.uuid4().hex[:8]}.slice"
    unit = f"cri-containerd-{cid}.scope"
    root = str(containerd.base / "runp-systemd")
    try:
        containerd.ctr("run", "-d", "--runc-binary", RUNP, "--runc-root", root,
                       "--runc-systemd-cgroup", "--cgroup", f"{pod_slice}:cri-containerd:{cid}",
                       CTR_IMAGE, cid, "sleep", "1000")
        p = show(unit, "ActiveState", "Delegate", "Slice", "ControlGroup")
        assert p == {"ActiveState": "active", "Delegate": "yes", "Slice": pod_slice,
                     "ControlGroup": f"/kubepods.slice/kubepods-besteffort.slice/{pod_slice}/"
                                     f"{unit}"}, p
        out = containerd.ctr("tasks", "exec", "--exec-id", "e1", cid, "cat", "/proc/self/cgroup")
        assert out.stdout.strip() == f"0::{p['ControlGroup']}", out.stdout
        containerd.ctr("tasks", "kill", "--signal", "KILL", cid)
        wait_for(lambda: "STOPPED" in containerd.ctr("tasks", "list").stdout, 60,
                 "the task to stop")
        containerd.ctr("tasks", "delete", cid)
        wait_for(lambda: show(unit, "LoadState")["LoadState"] == "not-found", 30,
                 f"{unit} to go")
    finally:
        containerd.ctr("tasks", "kill", "--all", "--signal", "KILL", cid, check=False)
        time.sleep(0.5)
        containerd.ctr("tasks", "delete", "--force", cid, check=False)
        containerd.ctr("containers", "delete", cid, check=False)
        subprocess.run(["systemctl", "stop", unit, pod_slice], capture_output=True)
