"""hack/v2vm boots a pure cgroup v2 VM and runs a command in it (a few seconds under TCG).

Skipped with RUNP_SKIP_VM=1, and inside such a VM (V2VM=1)."""
import os
import subprocess
from pathlib import Path

import pytest

V2VM = Path(__file__).resolve().parent.parent / "hack" / "v2vm"

pytestmark = [
    pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1"),
    pytest.mark.skipif(os.environ.get("V2VM") == "1", reason="already inside a v2vm VM"),
    pytest.mark.skipif(os.geteuid() != 0, reason="hack/v2vm needs root (apt-get, /boot/vmlinuz-*)"),
]


def test_pure_cgroup_v2_vm():
    script = ("cat /sys/fs/cgroup/cgroup.controllers; test ! -e /sys/fs/cgroup/memory.max || true; "
              "stat -fc %T /sys/fs/cgroup; exit 3")
    r = subprocess.run([str(V2VM), "--timeout", "300", "--", "sh", "-c", script],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert lines[-1] == "cgroup2fs", r.stdout
    controllers = lines[0].split()
    assert "memory" in controllers and "pids" in controllers, r.stdout
