"""Running a focused pytest subset inside a throw-away VM (hack/v2vm): the part that
tests/test_v2_host.py (busybox init, pure cgroup v2) and tests/test_systemd_vm.py (systemd as
PID 1) share. Not a test module."""
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

TOP = Path(__file__).resolve().parent.parent
V2VM = TOP / "hack" / "v2vm"


def python() -> str:
    """The venv's real interpreter (a pyenv shim is a bash script: slow, and may not resolve)."""
    venv = TOP / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else os.path.realpath(sys.executable)


def snapshot(dest: Path) -> str:
    """A private, compiled copy of runtime/ and tests/ plus a runp launcher that uses it: the run
    takes minutes, and the working tree (and the venv's installed runp) may change meanwhile.
    Not under /tmp, which is a fresh tmpfs in the VM. Returns the launcher's path."""
    for name in ("runtime", "tests"):
        shutil.copytree(TOP / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(TOP / "pyproject.toml", dest / "pyproject.toml")
    compileall.compile_dir(str(dest / "runtime"), quiet=1)
    py = python()
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


def counts(summary: str) -> dict[str, int]:
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|"
                                             r"xpassed|deselected)", summary)}


def check_run(r: subprocess.CompletedProcess, took: float, title: str, first_line: str,
              min_passed: int, vm_timeout: float, budget: float, capsys) -> dict[str, int]:
    """Print the inner summary and time; fail unless the VM came up as `first_line` says and
    the inner pytest passed at least `min_passed` tests with no failure. Skips (via pytest)
    when hack/v2vm cannot set the VM up at all. Returns the counts."""
    import pytest
    if r.returncode != 0 and re.search(r"v2vm: (apt-get install .* failed|no kernel found)",
                                       r.stderr):
        pytest.skip(f"hack/v2vm cannot set up the VM: {r.stderr.strip().splitlines()[-1]}")
    lines = r.stdout.splitlines()
    with capsys.disabled():
        print(f"\n--- {title} took {took:.0f} s ---")
        print("\n".join(lines[:1] + summary(r.stdout)))
    assert r.returncode != 124, f"the VM run timed out after {vm_timeout} s:\n{r.stdout[-4000:]}"
    assert lines and lines[0] == first_line, r.stdout[:2000] + r.stderr[-2000:]
    n = counts(lines[-1] if lines else "")
    assert r.returncode == 0, f"inner pytest exited {r.returncode}:\n{r.stdout[-8000:]}\n" \
                              f"{r.stderr[-3000:]}"
    assert not n.get("failed") and not n.get("error") and not n.get("errors")
    assert n.get("passed", 0) >= min_passed, lines[-1]
    if took > budget:
        print(f"warning: the VM run took {took:.0f} s, over its {budget} s budget")
    return n


def run_pytest(tests: list[str], timeout: float, prefix: str, vm_args: list[str] = (),
               setup: str = "") -> tuple[subprocess.CompletedProcess, float]:
    """pytest on `tests` in a VM, on a snapshot of the checkout (the checkout itself, with its
    .venv, is shared too: it may be anywhere, /tmp included). Returns the result and seconds."""
    snap = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    try:
        launcher = snapshot(snap)
        runp = os.environ.get("RUNP") or launcher
        pytest_args = ["-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                       "--basetemp", "/tmp/pytest-vm", "-q", "-rfEs", "--color=no", *tests]
        script = setup + f"exec {python()} " + " ".join(pytest_args)
        cmd = [str(V2VM), "--timeout", str(timeout), "--cwd", str(snap), "--share", str(TOP),
               "-e", f"RUNP={runp}", *vm_args, "--", "sh", "-c", script]
        t0 = time.monotonic()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           errors="replace", timeout=timeout + 120)
        return r, time.monotonic() - t0
    finally:
        shutil.rmtree(snap, ignore_errors=True)


def summary(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("=") and "short test summary"
                  in l), None)
    return lines[start:] if start is not None else lines[-1:]
