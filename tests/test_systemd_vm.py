"""The systemd cgroup driver on a host where systemd is PID 1: one throw-away VM booted with
systemd (`hack/v2vm --init systemd`, pure cgroup v2) runs tests/test_systemd_driver.py (runp's
scopes, runc side by side) and tests/integration/test_systemd_engines.py (podman with
cgroup_manager = "systemd", containerd with SystemdCgroup) in one boot. Under TCG this costs a
few minutes (budget: 12); the inner summary and the time are printed.

Skipped with RUNP_SKIP_VM=1, inside such a VM (V2VM=1), without root, or when hack/v2vm cannot
install QEMU, a kernel or systemd.
"""
from __future__ import annotations

import os
import re

import pytest

from vmrun import counts, run_pytest, summary

INNER_TESTS = ["tests/test_systemd_driver.py", "tests/integration/test_systemd_engines.py"]
BUDGET = 12 * 60
VM_TIMEOUT = 25 * 60

pytestmark = [
    pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1"),
    pytest.mark.skipif(os.environ.get("V2VM") == "1", reason="already inside a v2vm VM"),
    pytest.mark.skipif(os.geteuid() != 0, reason="hack/v2vm needs root (apt-get, /boot/vmlinuz-*)"),
]

SETUP = "echo \"pid 1: $(cat /proc/1/comm)\"; "


def test_systemd_driver_in_a_systemd_vm(capsys):
    r, took = run_pytest(INNER_TESTS, VM_TIMEOUT, "runp-sysvm-", ["--init", "systemd"], SETUP)
    if r.returncode != 0 and re.search(r"v2vm: (apt-get install .* failed|no kernel found)",
                                       r.stderr):
        pytest.skip(f"hack/v2vm cannot set up the VM: {r.stderr.strip().splitlines()[-1]}")
    lines = r.stdout.splitlines()
    with capsys.disabled():
        print(f"\n--- systemd VM: {' '.join(INNER_TESTS)} took {took:.0f} s ---")
        print("\n".join(lines[:1] + summary(r.stdout)))
    assert r.returncode != 124, f"the VM run timed out after {VM_TIMEOUT} s:\n{r.stdout[-4000:]}"
    assert lines and lines[0] == "pid 1: systemd", r.stdout[:2000] + r.stderr[-2000:]
    n = counts(lines[-1] if lines else "")
    assert r.returncode == 0, f"inner pytest exited {r.returncode}:\n{r.stdout[-8000:]}\n" \
                              f"{r.stderr[-3000:]}"
    assert not n.get("failed") and not n.get("error") and not n.get("errors")
    assert n.get("passed", 0) >= 6 and not n.get("skipped"), lines[-1]
    if took > BUDGET:
        print(f"warning: the VM run took {took:.0f} s, over its {BUDGET} s budget")
