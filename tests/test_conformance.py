"""The runtime-spec conformance suite (conformance/oci_conformance.py, cases in conformance/cases/)
against runp, in CI.

The suite runs once per session (about a minute), as a separate process: it makes itself a
child subreaper and changes its oom_score_adj for a case, which must not touch pytest. Each case
then becomes a test here. A case that fails a MUST fails its test; a case listed in KNOWN_GAPS
is an expected failure until runp is fixed (it turns into an error when it starts passing, so
the list stays honest). Skips (what this machine cannot do), unmet SHOULDs and spec/runtime-tools
conflicts are reported as skips with the suite's reason.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
SUITE = TOP / "conformance" / "oci_conformance.py"
RUNP = os.environ.get("RUNP") or str(TOP / ".venv" / "bin" / "runp")

# the suite's modules (as oci_conformance.py finds them: next to it); importing cases registers them
sys.path.insert(0, str(SUITE.parent))
import cases  # noqa: E402,F401
import harness  # noqa: E402
import registry  # noqa: E402

# this run's own cgroup parent: suites running at once (several checkouts) never see each
# other's containers as leaks
CGROUP_PARENT = f"oci-conformance-{os.getpid()}"

# case name -> why runp fails it today (each was reported to the owner of that code)
KNOWN_GAPS: dict[str, str] = {}


@pytest.fixture(scope="session")
def results(tmp_path_factory) -> dict[str, dict]:
    if os.geteuid() != 0:
        pytest.skip("the conformance suite needs root")
    out = tmp_path_factory.mktemp("conformance") / "runp.json"
    p = subprocess.run([sys.executable, str(SUITE), "--runtime", RUNP, "--json", str(out)],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OCI_CONFORMANCE_CGROUP_PARENT": CGROUP_PARENT})
    if not out.exists():
        pytest.fail(f"the suite did not finish (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    summary = [ln for ln in p.stdout.splitlines() if ln.startswith("# ")]
    print("\n".join(summary))
    return {r["name"]: r for r in json.loads(out.read_text())["results"]}


def test_every_run_leaves_no_cgroup_parent(results):
    """The suite removes its cgroup parents at the end; anything left is a leak of some case."""
    left = [os.path.join(r, p) for r in harness.Cgroups().roots()
            for p in (CGROUP_PARENT, CGROUP_PARENT + "-rel") if os.path.isdir(os.path.join(r, p))]
    assert not left


@pytest.mark.parametrize("name", [c.name for c in registry.CASES])
def test_case(results, name):
    r = results.get(name)
    assert r is not None, f"{name} did not run"
    where = f"{r['level']} {r['ref']}: \"{r['quote']}\""
    if r["status"] == "fail":
        if name in KNOWN_GAPS:
            pytest.xfail(f"known runp gap: {KNOWN_GAPS[name]}")
        pytest.fail(f"{where}\n{r['message']}", pytrace=False)
    if name in KNOWN_GAPS:
        pytest.fail(f"{name} passes now: remove it from KNOWN_GAPS", pytrace=False)
    if r["status"] == "skip":
        pytest.skip(r["message"])
    if r["status"] == "should":
        pytest.skip(f"SHOULD not met ({where}): {r['message']}")
    if r["status"] == "todo":
        pytest.skip(f"spec and runtime-tools disagree ({r['conflict']}): {r['message']}")
