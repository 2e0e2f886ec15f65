"""podman's `container checkpoint` / `container restore` and containerd's `ctr task checkpoint`
driving runp (and runc, side by side), where criu works: tests/test_checkpoint_vm.py runs this
file inside its VM (Debian's 6.1 kernel); elsewhere it skips with `criu check`'s reason.

A busybox counter prints 0, 1, 2, ... into the engine's log; after the checkpoint the
container stops, after the restore it must print on from the number after the last one logged.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid

import pytest

from .conftest import CTR_IMAGE, IMAGE, RUNP, wait_for

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"


def _criu_problem() -> str | None:
    criu = shutil.which("criu") or "/usr/sbin/criu"
    try:
        p = subprocess.run([criu, "check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
    except OSError as e:
        return f"criu: {e}"
    errors = [ln for ln in p.stdout.splitlines() if ln.startswith("Error")] or [p.stdout.strip()]
    return None if p.returncode == 0 else f"criu check fails here: {errors[0]}"


PROBLEM = _criu_problem()
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))]


def numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"^(\d+)$", text, re.M)]


def test_podman_checkpoint_and_restore(podman):
    """podman passes the runtime checkpoint --image-path/--work-path and restore --bundle
    --detach --pid-file; the counter goes on in the same podman log."""
    name = f"ck-{uuid.uuid4().hex[:8]}"
    podman.run("-d", "--name", name, IMAGE, "sh", "-c", COUNTER)
    wait_for(lambda: len(numbers(podman("logs", name).stdout)) >= 3, 60, "the counter to count")
    t0 = time.monotonic()
    podman("container", "checkpoint", name, timeout=300)
    took = time.monotonic() - t0
    assert podman.status(name) == "exited"
    last = numbers(podman("logs", name).stdout)[-1]
    t0 = time.monotonic()
    podman("container", "restore", name, timeout=300)
    took_r = time.monotonic() - t0
    assert podman.status(name) == "running"
    wait_for(lambda: numbers(podman("logs", name).stdout)[-1] >= last + 3, 60, "counting on")
    after = numbers(podman("logs", name).stdout)
    i = after.index(last)
    assert after[i:i + 4] == [last, last + 1, last + 2, last + 3], after[i - 2:i + 6]
    podman("rm", "--force", "--time", "0", name)
    print(f"\ncriu timing: podman with {podman.runtime}: checkpoint {took:.1f} s, "
          f"restore {took_r:.1f} s")


@pytest.mark.parametrize("runtime", ["runp", "runc"])
def test_ctr_task_checkpoint(containerd, runtime, tmp_path):
    """containerd 1.6: `ctr task checkpoint --exit`: the shim runs the runtime's checkpoint
    (stdin is the shim's /dev/null: runp reopens it as the container's own, as runc does) and
    stores a checkpoint image; the task has exited. (Restoring it with `ctr containers restore
    --live` fails for runc and runp alike here: "image name not found in index", containerd
    looks for the name of an image imported from a hand-made OCI archive.)"""
    binary = RUNP if runtime == "runp" else shutil.which("runc")
    cid = f"ck-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "out.log"
    c = containerd.ctr
    ref = ""
    try:
        c("run", "-d", "--runc-binary", binary, "--log-uri", f"file://{log}", CTR_IMAGE, cid,
          "sh", "-c", COUNTER)
        wait_for(lambda: log.exists() and len(numbers(log.read_text())) >= 3, 60, "counting")
        p = c("tasks", "checkpoint", "--exit", cid, timeout=300)
        ref = p.stdout.strip().split()[-1]
        assert ref.startswith(f"containerd.io/checkpoint/{cid}:"), p.stdout
        assert ref in c("images", "list", "--quiet").stdout.split()
        wait_for(lambda: "STOPPED" in c("tasks", "list").stdout, 30, "the task to stop")
        n = len(numbers(log.read_text()))
        time.sleep(1)
        assert len(numbers(log.read_text())) == n, "still counting after checkpoint --exit"
    finally:
        c("tasks", "kill", "-s", "KILL", cid, check=False)
        c("tasks", "delete", cid, check=False)
        c("containers", "delete", cid, check=False)
        if ref:
            c("images", "remove", ref, check=False)
