"""The cgroup tests again, on a pure cgroup v2 host: a throw-away QEMU VM (hack/v2vm).

Most production hosts are v2-only while this machine is hybrid, so the cgroup manager
(tests/test_cgroups.py), real containers' cgroups (tests/test_container_cgroups.py) and the basic
lifecycle (tests/test_lifecycle.py) run once more inside the VM, and must pass there. Under TCG
this costs a few minutes (budget: 15); the inner pytest summary and the time are printed.

Skipped with RUNP_SKIP_VM=1, inside such a VM (V2VM=1), without root, or when hack/v2vm cannot
install QEMU or a kernel.
"""
from __future__ import annotations

import compileall
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
V2VM = TOP / "hack" / "v2vm"
# the basic lifecycle from test_lifecycle.py (all of it would add minutes under TCG)
LIFECYCLE = ["test_create_start_split", "test_state_fields", "test_kill_default_is_term_and_stopped_"
             "container_errors", "test_delete_running_needs_force", "test_delete_created_needs_force",
             "test_run_output_and_stdin", "test_start_twice_fails", "test_stopped_before_start_if_init_"
             "killed", "test_list_formats", "test_pid_file"]
INNER_TESTS = ["tests/test_cgroups.py", "tests/test_container_cgroups.py",
               *(f"tests/test_lifecycle.py::{t}" for t in LIFECYCLE)]
BUDGET = 15 * 60      # seconds the VM part may take in CI
VM_TIMEOUT = 25 * 60  # past this hack/v2vm kills QEMU (exit 124)

pytestmark = [
    pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1"),
    pytest.mark.skipif(os.environ.get("V2VM") == "1", reason="already inside a v2vm VM"),
    pytest.mark.skipif(os.geteuid() != 0, reason="hack/v2vm needs root (apt-get, /boot/vmlinuz-*)"),
]


def _python() -> str:
    """The venv's real interpreter (a pyenv shim is a bash script: slow, and may not resolve)."""
    venv = TOP / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else os.path.realpath(sys.executable)


def _snapshot(dest: Path) -> str:
    """A private, compiled copy of runtime/ and tests/ plus a runp launcher that uses it: the run
    takes minutes, and the working tree (and the venv's installed runp) may change meanwhile.
    Not under /tmp, which is a fresh tmpfs in the VM. Returns the launcher's path."""
    for name in ("runtime", "tests"):
        shutil.copytree(TOP / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(TOP / "pyproject.toml", dest / "pyproject.toml")
    compileall.compile_dir(str(dest / "runtime"), quiet=1)
    py = _python()
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    launcher = dest / "runp"
    launcher.write_text(f"#!{py} -IS\nimport sys\nsys.path[:0] = [{str(dest)!r}]\n"
                        f"sys.path += [{purelib!r}, '/usr/local/lib/python3.11/dist-packages', "
                        f"'/usr/lib/python3/dist-packages']\nfrom runtime.cli import main\nmain()\n")
    launcher.chmod(0o755)
    for p in [dest, *dest.parents]:   # containers in user namespaces must reach the bundle code
        if str(p) in ("/", "/var/tmp"):
            break
        p.chmod(p.stat().st_mode | 0o055)
    return str(launcher)


def _inner_script() -> str:
    # brd: a RAM disk, so that the blockIO throttle test has a block device (the VM has none).
    # Temporary files go to the VM's own /tmp (a fresh tmpfs): the host root is read-only there.
    pytest_args = ["-m", "pytest", "-p", "no:cacheprovider", "--basetemp", "/tmp/pytest-v2",
                   "-q", "-rfEs", "--color=no", *INNER_TESTS]
    return ("echo \"cgroup fs: $(stat -fc %T /sys/fs/cgroup)\"; "
            "modprobe brd rd_nr=1 rd_size=4096 2>/dev/null || true; "
            f"exec {_python()} " + " ".join(pytest_args))


def _counts(summary: str) -> dict[str, int]:
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|"
                                             r"xpassed|deselected)", summary)}


def test_cgroup_tests_pass_on_pure_v2(capsys):
    snap = Path(tempfile.mkdtemp(prefix="runp-v2host-", dir="/var/tmp"))
    try:
        launcher = _snapshot(snap)
        runp = os.environ.get("RUNP") or launcher
        # the checkout itself (its .venv: the interpreter and pytest) may be anywhere, /tmp too
        cmd = [str(V2VM), "--timeout", str(VM_TIMEOUT), "--cwd", str(snap), "--share", str(TOP),
               "-e", f"RUNP={runp}", "--", "sh", "-c", _inner_script()]
        t0 = time.monotonic()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           errors="replace", timeout=VM_TIMEOUT + 120)
        took = time.monotonic() - t0
    finally:
        shutil.rmtree(snap, ignore_errors=True)
    if r.returncode != 0 and re.search(r"v2vm: (apt-get install .* failed|no kernel found)",
                                       r.stderr):
        pytest.skip(f"hack/v2vm cannot set up the VM: {r.stderr.strip().splitlines()[-1]}")
    lines = r.stdout.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("=") and "short test summary"
                  in l), None)
    summary = lines[start:] if start is not None else lines[-1:]
    with capsys.disabled():
        print(f"\n--- pure cgroup v2 VM: test_cgroups.py, test_container_cgroups.py and "
              f"{len(LIFECYCLE)} basic tests of test_lifecycle.py took {took:.0f} s ---")
        print("\n".join(lines[:1] + summary))
    assert r.returncode != 124, f"the VM run timed out after {VM_TIMEOUT} s:\n{r.stdout[-4000:]}"
    assert lines and lines[0] == "cgroup fs: cgroup2fs", r.stdout[:2000] + r.stderr[-2000:]
    counts = _counts(lines[-1] if lines else "")
    assert r.returncode == 0, f"inner pytest exited {r.returncode}:\n{r.stdout[-6000:]}\n" \
                              f"{r.stderr[-3000:]}"
    assert not counts.get("failed") and not counts.get("error") and not counts.get("errors")
    assert counts.get("passed", 0) >= 100, lines[-1]   # about 115 pass, 8 skip
    if took > BUDGET:
        print(f"warning: the VM run took {took:.0f} s, over its {BUDGET} s budget")
