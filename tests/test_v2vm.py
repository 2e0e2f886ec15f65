"""hack/v2vm boots a pure cgroup v2 VM and runs a command in it (a few seconds under TCG), with
the busybox init or with systemd as PID 1 (about 15 s), and shares a directory under /tmp.

Skipped with RUNP_SKIP_VM=1, and inside such a VM (V2VM=1)."""
import os
import subprocess
import tempfile
import time
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


def test_directory_under_tmp_is_shared():
    """The VM mounts a fresh tmpfs on /tmp: a working directory (a checkout) below it, and any
    --share DIR, is shared at the same path, read-only."""
    with tempfile.TemporaryDirectory(prefix="runp-v2vm-") as d, \
            tempfile.TemporaryDirectory(prefix="runp-v2vm-other-") as other:
        Path(d, "marker").write_text("from the host\n")
        Path(other, "marker").write_text("also shared\n")
        script = f"pwd; cat marker {other}/marker; touch marker 2>/dev/null || echo read-only"
        r = subprocess.run([str(V2VM), "--timeout", "300", "--share", other, "--", "sh", "-c",
                            script], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=900)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert r.stdout.splitlines() == [d, "from the host", "also shared", "read-only"], r.stdout


def test_systemd_as_pid1():
    """--init systemd: systemd is PID 1, the command runs in the delegated service v2vm.service
    (in its leaf "payload"), and its exit status comes back."""
    script = ("cat /proc/1/comm; cat /proc/self/cgroup; systemctl is-active v2vm.service; "
              "systemctl show -p Delegate --value v2vm.service; stat -fc %T /sys/fs/cgroup; exit 5")
    t0 = time.monotonic()
    r = subprocess.run([str(V2VM), "--init", "systemd", "--timeout", "300", "--", "sh", "-c",
                        script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=900)
    took = time.monotonic() - t0
    assert r.returncode == 5, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.splitlines() == ["systemd", "0::/system.slice/v2vm.service/payload", "active",
                                     "yes", "cgroup2fs"], r.stdout
    print(f"systemd VM: boot, `true`-sized command and power-off took {took:.1f} s")
