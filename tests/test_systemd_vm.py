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

import pytest

from vmrun import check_run, run_pytest

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
    n = check_run(r, took, f"systemd VM: {' '.join(INNER_TESTS)}", "pid 1: systemd", 8,
                  VM_TIMEOUT, BUDGET, capsys)
    assert not n.get("skipped"), "every test must run where systemd is PID 1"
