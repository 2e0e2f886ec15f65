"""100 containers through their whole lifecycle from parallel workers with overlapping ids, with
list/state/events --stats running meanwhile (hack/load; the 1,000-container run and the
comparison with runc are `hack/load --compare-runc`)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import TOP


def test_load_100_containers(tmp_path):
    out = tmp_path / "load.json"
    p = subprocess.run([sys.executable, str(TOP / "hack" / "load"), "--containers", "100",
                        "--workers", "6", "--json", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert out.exists(), p.stdout + p.stderr
    res = json.loads(out.read_text())[0]
    assert not res["failures"], "\n".join(res["failures"][:20])
    assert not res["leaks"], res["leaks"]
    assert res["containers"] >= 100, p.stdout
    assert res["duplicates"] > 0, "no create met a duplicate id: the ids did not overlap"
    # every lifecycle step ran for every container, list/state/events meanwhile
    for kind in ("create", "start", "exec", "kill", "delete", "list", "events"):
        assert res["counts"].get(kind, 0) > 0, res["counts"]
    assert res["counts"]["exec"] == res["containers"]
    assert p.returncode == 0, p.stdout + p.stderr
