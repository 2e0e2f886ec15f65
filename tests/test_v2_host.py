"""The cgroup tests again, on a pure cgroup v2 host: a throw-away QEMU VM (hack/v2vm).

Most production hosts are v2-only while this machine is hybrid, so the cgroup manager
(tests/test_cgroups.py), real containers' cgroups (tests/test_container_cgroups.py) and the basic
lifecycle (tests/test_lifecycle.py) run once more inside the VM, and must pass there. Under TCG
this costs a few minutes (budget: 15); the inner pytest summary and the time are printed.

Skipped with RUNP_SKIP_VM=1, inside such a VM (V2VM=1), without root, or when hack/v2vm cannot
install QEMU or a kernel.
"""
from __future__ import annotations

import os

import pytest

from vmrun import check_run, run_pytest

# the basic lifecycle from test_lifecycle.py (all of it would add minutes under TCG)
LIFECYCLE = ["test_create_start_split", "test_state_fields", "test_kill_default_is_term_and_stopped_"
             "container_errors", "test_delete_running_needs_force", "test_delete_created_needs_force",
             "test_run_output_and_stdin", "test_start_twice_fails", "test_stopped_before_start_if_init_"
             "killed", "test_list_formats", "test_pid_file"]
# rootless runp on v2 (an ordinary user made in the VM), and cgroup ownership (v2 only)
ROOTLESS = ["test_spec_rootless_bundle_runs_as_user", "test_without_cgroup_or_cgroupns",
            "test_delegated_cgroup_is_used", "test_cgroup_given_to_the_container_on_v2",
            "test_cgroup_stays_roots_otherwise"]
INNER_TESTS = ["tests/test_cgroups.py", "tests/test_container_cgroups.py",
               *(f"tests/test_lifecycle.py::{t}" for t in LIFECYCLE),
               *(f"tests/test_rootless.py::{t}" for t in ROOTLESS)]
BUDGET = 15 * 60      # seconds the VM part may take in CI
VM_TIMEOUT = 25 * 60  # past this hack/v2vm kills QEMU (exit 124)

pytestmark = [
    pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1"),
    pytest.mark.skipif(os.environ.get("V2VM") == "1", reason="already inside a v2vm VM"),
    pytest.mark.skipif(os.geteuid() != 0, reason="hack/v2vm needs root (apt-get, /boot/vmlinuz-*)"),
]

# brd: a RAM disk, so that the blockIO throttle test has a block device (the VM has none).
# Temporary files go to the VM's own /tmp (a fresh tmpfs): the host root is read-only there.
SETUP = ("echo \"cgroup fs: $(stat -fc %T /sys/fs/cgroup)\"; "
         "modprobe brd rd_nr=1 rd_size=4096 2>/dev/null || true; ")


def test_cgroup_tests_pass_on_pure_v2(capsys):
    r, took = run_pytest(INNER_TESTS, VM_TIMEOUT, "runp-v2host-", setup=SETUP)
    check_run(r, took, f"pure cgroup v2 VM: test_cgroups.py, test_container_cgroups.py and "
              f"{len(LIFECYCLE)} basic tests of test_lifecycle.py", "cgroup fs: cgroup2fs",
              100, VM_TIMEOUT, BUDGET, capsys)   # about 115 pass, 8 skip
