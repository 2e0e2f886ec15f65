"""`--systemd-cgroup` against a real systemd: transient scopes, their properties, the cgroup files,
update, pause/resume, exec, delete, a failed create, and runc on the same bundle side by side.

Runs only where systemd is PID 1: inside the VM that tests/test_systemd_vm.py boots with
`hack/v2vm --init systemd` (this machine has no systemd as init). Every test stops its units.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from runtime.linux.cgroups import systemd as sd

pytestmark = pytest.mark.skipif(not sd.running(), reason="systemd is not PID 1 here "
                                "(tests/test_systemd_vm.py runs these in a VM)")

# the properties compared with runc (CPUWeight is not: runp converts shares with runc 1.2's
# formula, runc 1.1.5 with the old linear one; Description names the runtime)
SAME_AS_RUNC = ("Slice", "ControlGroup", "Delegate", "MemoryMax", "MemoryLow", "MemorySwapMax",
                "TasksMax", "CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec", "AllowedCPUs",
                "AllowedMemoryNodes", "MemoryAccounting", "CPUAccounting", "IOAccounting",
                "TasksAccounting", "DevicePolicy")
MIB = 1 << 20


def show(unit: str, *names: str) -> dict[str, str]:
    out = subprocess.run(["systemctl", "show", unit, *(f"--property={n}" for n in names)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_gone(unit: str) -> bool:
    return show(unit, "LoadState")["LoadState"] == "not-found"


def cgfile(unit_path: str, name: str) -> str:
    return Path("/sys/fs/cgroup", unit_path.lstrip("/"), name).read_text().strip()


@pytest.fixture
def stop_units():
    """Units a test made: stopped and reset at the end, whatever happened."""
    units: list[str] = []
    yield units
    for u in units:
        subprocess.run(["systemctl", "stop", u], capture_output=True)
        subprocess.run(["systemctl", "reset-failed", u], capture_output=True)


def limited(bundle, cgroups_path: str, args=("sleep", "1000")) -> None:
    lx = bundle.config["linux"]
    lx["cgroupsPath"] = cgroups_path
    lx["resources"] = {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 64 * MIB, "reservation": 32 * MIB, "swap": 96 * MIB},
        "cpu": {"quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 42},
    }
    bundle.config["process"]["args"] = list(args)
    bundle.write()


def test_scope_lifecycle(runp, bundle, cid, stop_units):
    unit = f"runp-{cid}.scope"
    stop_units.append(unit)
    limited(bundle, f"system.slice:runp:{cid}")
    bundle.config["linux"]["resources"]["cpu"]["shares"] = 1024
    bundle.config["annotations"] = {"org.systemd.property.TimeoutStopSec": "uint64 7",
                                    "org.systemd.property.CollectMode": "'inactive-or-failed'"}
    bundle.write()
    runp("--systemd-cgroup", "create", "--bundle", str(bundle.path), cid)
    p = show(unit, "ActiveState", "Delegate", "ControlGroup", "MemoryMax", "TasksMax",
             "CPUWeight", "TimeoutStopUSec", "CollectMode", "Description")
    assert p["ActiveState"] == "active" and p["Delegate"] == "yes"
    assert p["ControlGroup"] == f"/system.slice/{unit}"
    assert p["MemoryMax"] == str(64 * MIB) and p["TasksMax"] == "42" and p["CPUWeight"] == "100"
    assert p["TimeoutStopUSec"] == "7s" and p["CollectMode"] == "inactive-or-failed"
    assert p["Description"] == f"runp container {cid}"
    cg = p["ControlGroup"]
    pid = runp.state(cid)["pid"]
    assert Path(f"/proc/{pid}/cgroup").read_text() == f"0::{cg}\n"
    # the files agree; cpu.max is the exact quota (systemd's is rounded to 10 ms per second)
    assert cgfile(cg, "memory.max") == str(64 * MIB) and cgfile(cg, "memory.low") == str(32 * MIB)
    assert cgfile(cg, "memory.swap.max") == str(32 * MIB) and cgfile(cg, "pids.max") == "42"
    assert cgfile(cg, "cpu.max") == "50000 100000" and cgfile(cg, "cpu.weight") == "100"
    assert cgfile(cg, "cpuset.cpus") == "0-1"

    runp("start", cid)
    r = runp("exec", cid, "cat", "/proc/self/cgroup")
    assert r.stdout.decode() == "0::/\n" or r.stdout.decode().endswith(f"{cg}\n")
    assert pid in json.loads(runp("ps", "--format", "json", cid).stdout)

    runp("update", "--memory", "128m", "--pids-limit", "50", "--cpu-quota", "25000", cid)
    p = show(unit, "MemoryMax", "TasksMax", "CPUQuotaPerSecUSec")
    assert (p["MemoryMax"], p["TasksMax"], p["CPUQuotaPerSecUSec"]) == (str(128 * MIB), "50",
                                                                       "250ms")
    assert cgfile(cg, "memory.max") == str(128 * MIB) and cgfile(cg, "pids.max") == "50"
    assert cgfile(cg, "cpu.max") == "25000 100000"

    runp("pause", cid)
    assert runp.state(cid)["status"] == "paused" and cgfile(cg, "cgroup.freeze") == "1"
    runp("resume", cid)
    assert runp.state(cid)["status"] == "running" and cgfile(cg, "cgroup.freeze") == "0"

    runp("kill", cid, "KILL")
    deadline = time.monotonic() + 20
    while runp.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.1)
    runp("delete", cid)
    assert unit_gone(unit)
    assert not Path("/sys/fs/cgroup", cg.lstrip("/")).exists()


def test_same_unit_and_properties_as_runc(runp, bundle, cid, stop_units, tmp_path):
    runc = shutil.which("runc")
    if not runc:
        pytest.skip("runc is not installed")
    unit = f"runp-{cid}.scope"
    stop_units.append(unit)
    limited(bundle, f"system.slice:runp:{cid}")
    seen = {}
    for name, argv in (("runp", runp.cmd()), ("runc", [runc, "--root", str(tmp_path / "runc")])):
        with tempfile.TemporaryFile() as err:  # a file: the container keeps its stderr
            r = subprocess.run([*argv, "--systemd-cgroup", "create", "--bundle",
                                str(bundle.path), cid], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=300)
            err.seek(0)
            assert r.returncode == 0, (name, err.read())
        try:
            seen[name] = show(unit, "ActiveState", *SAME_AS_RUNC)
        finally:
            subprocess.run([*argv, "delete", "--force", cid], capture_output=True, timeout=300)
        assert unit_gone(unit), name
    print(json.dumps(seen, indent=1))
    assert seen["runp"]["ActiveState"] == "active" and seen["runp"]["MemoryMax"] == str(64 * MIB)
    assert seen["runp"] == seen["runc"]


def test_nested_slice_is_made_by_systemd(runp, bundle, cid, stop_units):
    """A slice that does not exist yet (a-b-c.slice, as Kubernetes' pod slices) is made by
    systemd with its parents, as for runc."""
    unit = f"cri-containerd-{cid}.scope"
    slice_name = f"kubepods-besteffort-pod{cid.replace('-', '_')}.slice"
    stop_units += [unit, slice_name]
    bundle.config["linux"]["cgroupsPath"] = f"{slice_name}:cri-containerd:{cid}"
    bundle.set_args("sleep", "1000")
    runp("--systemd-cgroup", "run", "--detach", "--bundle", str(bundle.path), cid)
    cg = show(unit, "ControlGroup")["ControlGroup"]
    assert cg == f"/kubepods.slice/kubepods-besteffort.slice/{slice_name}/{unit}"
    assert show(slice_name, "ActiveState")["ActiveState"] == "active"
    runp("delete", "--force", cid)
    assert unit_gone(unit)


def test_run_in_the_foreground(runp, bundle, cid, stop_units):
    unit = f"runp-{cid}.scope"
    stop_units.append(unit)
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:runp:{cid}"
    bundle.set_args("sh", "-c", "cat /proc/self/cgroup; exit 3")
    r = runp("--systemd-cgroup", "run", "--bundle", str(bundle.path), cid, check=False)
    assert r.returncode == 3, r.stderr
    assert r.stdout.decode().strip() in ("0::/", f"0::/system.slice/{unit}")
    assert unit_gone(unit) and not runp.ids()


def test_failed_create_leaves_no_unit(runp, bundle, cid, stop_units):
    """A resource the files refuse fails create after systemd started the scope: the unit is
    stopped again; so is a config that fails in the init."""
    unit = f"runp-{cid}.scope"
    stop_units.append(unit)
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:runp:{cid}"
    bundle.config["linux"]["resources"] = {"unified": {"memory.no_such_file": "1"}}
    bundle.write()
    r = runp("--systemd-cgroup", "create", "--bundle", str(bundle.path), cid, check=False)
    assert r.returncode == 1 and b"unified" in r.stderr, r.stderr
    assert unit_gone(unit) and not runp.ids()
    bundle.config["linux"]["resources"] = {}
    bundle.config["process"]["cwd"] = "/etc/passwd/x"
    bundle.write()
    r = runp("--systemd-cgroup", "create", "--bundle", str(bundle.path), cid, check=False)
    assert r.returncode == 1 and b"process.cwd" in r.stderr, r.stderr
    assert unit_gone(unit) and not runp.ids()


def test_features_on_a_systemd_host():
    from conftest import RUNP
    f = json.loads(subprocess.run([RUNP, "features"], capture_output=True, check=True).stdout)
    assert f["linux"]["cgroup"]["systemd"] is True

