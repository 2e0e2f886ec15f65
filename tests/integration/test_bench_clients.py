"""`hack/bench --clients` works end to end: every real-client row has runp and runc figures, and
the engines it started leave nothing behind (issue 18)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import CONTAINERD_TOOLS, PODMAN_TOOLS, ensure_tools
from .engines import RUNP, TOP, processes_naming

pytestmark = pytest.mark.integration


def test_bench_clients_quick(tmp_path):
    ensure_tools({**PODMAN_TOOLS, **CONTAINERD_TOOLS})
    pytest.importorskip("grpc", reason="grpcio (the test extra) is not installed")
    procs_before = set(processes_naming("/tmp/runp-bc-"))
    out = tmp_path / "out"
    p = subprocess.run([str(TOP / "hack" / "bench"), "--clients", "--quick", "--no-setup",
                        "--no-plot", "--runtimes", "runp,runc", "--runp", RUNP, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads((out / "bench.json").read_text())
    assert not data["meta"].get("errors"), data["meta"]["errors"]
    for row in ("podman_run", "podman_detached", "ctr_run", "cri_pod", "cri_teardown"):
        med = data["results"][f"clients.{row}"]["median"]
        assert set(med) == {"runp", "runc"} and all(v > 0 for v in med.values()), (row, med)
    assert "| podman run --rm" in (out / "bench.md").read_text()
    # its own temp dir (another checkout's bench may be running beside this one)
    mine = data["meta"]["clients_dir"]
    assert mine.startswith("/tmp/runp-bc-") and not os.path.exists(mine), f"the bench left {mine}"
    assert not set(processes_naming(mine)) - procs_before, "engine processes left"
