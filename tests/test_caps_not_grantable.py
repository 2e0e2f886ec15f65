"""Capabilities that cannot be granted (config.md, runtime-spec 1.3: "Runtimes SHOULD NOT fail
if the container configuration requests capabilities that cannot be granted"; "MUST be logged
as a warning"): a name the kernel does not know and one outside the host's bounding set are
dropped with a warning naming the JSON path, through runp's log (--log-format json gives
warning lines, as runc's), and the container runs with the rest. `runp check` reports them as
errors. runc 1.1.5 side by side: it warns about unknown names too, but fails create when the
host lacks a permitted capability (CAP_SYS_RESOURCE on this machine).
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import run_container
from runtime.linux import capabilities as caps

RUNC = shutil.which("runc")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
SETS = ("bounding", "effective", "permitted")


def host_lacks() -> str | None:
    """A capability this kernel knows and this host's bounding set lacks."""
    have = caps.host_bounding()
    for num in range(caps.last_cap() + 1):
        if not have >> num & 1 and num in caps.CAP_NAMES:
            return caps.CAP_NAMES[num]
    return None


LACKING = host_lacks()
needs_lacking = pytest.mark.skipif(LACKING is None, reason="this host has every capability")


def ask_for(bundle, *extra: str) -> dict[str, int]:
    """Add `extra` to the bounding, effective and permitted sets; where each landed."""
    where = {}
    for s in SETS:
        lst = bundle.config["process"]["capabilities"][s]
        where[s] = len(lst)
        lst.extend(extra)
    bundle.set_args("grep", "^Cap", "/proc/self/status")
    return where


def cap_field(out: str, name: str) -> int:
    line = next(ln for ln in out.splitlines() if ln.startswith(name + ":"))
    return int(line.split()[1], 16)


def run(cmd: list[str], bundle, log) -> tuple[int, str, list[dict]]:
    p = run_container(cmd, bundle, "--log", str(log), "--log-format", "json", prefix="caps")
    lines = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
    return p.returncode, p.stdout.decode(), lines


@needs_lacking
def test_dropped_with_a_warning_naming_the_path(runp, bundle, tmp_path):
    configured = list(bundle.config["process"]["capabilities"]["effective"])
    at = ask_for(bundle, "CAP_FOO", LACKING)
    code, out, log = run(runp.cmd(), bundle, tmp_path / "runp.log")
    assert code == 0, log
    want = caps.mask({caps.CAPS[c] for c in configured})
    assert cap_field(out, "CapEff") == want and cap_field(out, "CapPrm") == want, out
    assert cap_field(out, "CapBnd") == want, out
    warnings = [ln["msg"] for ln in log if ln["level"] == "warning"]
    for s in SETS:
        assert (f'config.json: process.capabilities.{s}[{at[s]}]: unknown capability "CAP_FOO"'
                in warnings), warnings
        assert (f"config.json: process.capabilities.{s}[{at[s] + 1}]: capability \"{LACKING}\" "
                "is not available on this host") in warnings, warnings
    assert not [ln for ln in log if ln["level"] == "error"], log


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
@needs_lacking
def test_side_by_side_with_runc(runp, make_bundle, tmp_path):
    """Unknown names: both warn and run with the rest. A capability the host lacks: runc
    1.1.5 fails create, runp warns and runs."""
    runc = [RUNC, "--root", str(tmp_path / "runc-root")]
    outs = {}
    for name, cmd in (("runp", runp.cmd()), ("runc", runc)):
        b = make_bundle()
        ask_for(b, "CAP_FOO")
        code, out, log = run(cmd, b, tmp_path / f"{name}-unknown.log")
        assert code == 0, log
        assert any(ln["level"] == "warning" and "CAP_FOO" in ln["msg"] for ln in log), log
        outs[name] = out
    assert outs["runp"] == outs["runc"]
    b = make_bundle()
    ask_for(b, LACKING)
    code, _, log = run(runc, b, tmp_path / "runc-lacking.log")
    assert code != 0 and "unable to apply caps" in log[-1]["msg"], log
    b = make_bundle()
    ask_for(b, LACKING)
    code, _, log = run(runp.cmd(), b, tmp_path / "runp-lacking.log")
    assert code == 0 and all(ln["level"] == "warning" for ln in log), log


@needs_lacking
def test_check_reports_them_as_errors(runp, bundle):
    at = ask_for(bundle, "CAP_FOO", LACKING)
    p = runp("check", "-b", str(bundle.path), check=False)
    out = p.stdout.decode().splitlines()
    assert p.returncode == 1
    b = at["bounding"]
    assert out[:2] == [
        f'config.json: process.capabilities.bounding[{b}]: unknown capability "CAP_FOO"',
        f'config.json: process.capabilities.bounding[{b + 1}]: capability "{LACKING}" is not '
        "available on this host"], out
    assert len(out) == 6, out


def test_exec_process_file_warns_naming_the_file(runp, bundle, cid, tmp_path):
    bundle.set_args("sleep", "60")
    runp("run", "-d", "-b", str(bundle.path), cid)
    proc = dict(bundle.config["process"], args=["grep", "^CapBnd", "/proc/self/status"])
    proc["capabilities"] = {"bounding": ["CAP_KILL", "CAP_FOO"]}
    pfile = tmp_path / "proc.json"
    pfile.write_text(json.dumps(proc))
    p = runp("exec", "--process", str(pfile), cid, check=False)
    assert p.returncode == 0, p.stderr
    assert cap_field(p.stdout.decode(), "CapBnd") == 1 << caps.CAPS["CAP_KILL"]
    assert (f'level=warning msg="{pfile}: process.capabilities.bounding[1]: unknown capability '
            r'\"CAP_FOO\""' in p.stderr.decode()), p.stderr
