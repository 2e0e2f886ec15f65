"""Tests of conformance/runtime_tools.py on made-up TAP: no runtime, no suite needed."""
from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
_SPEC = importlib.util.spec_from_file_location("runtime_tools", TOP / "conformance" / "runtime_tools.py")
rt = importlib.util.module_from_spec(_SPEC)
sys.modules["runtime_tools"] = rt
_SPEC.loader.exec_module(rt)


# ---------------------------------------------------------------- TAP parsing

def test_parse_points_skip_todo_plan():
    tap = rt.parse_tap(
        "TAP version 13\n"
        "ok 1 - first\n"
        "not ok 2 - second\n"
        "ok 3 # SKIP linux.sysctl not set\n"
        "ok 4 # skip lower-case directive\n"
        "not ok 5 # TODO not done yet\n"
        "ok 6 - sixth # TODO unexpectedly passing\n"
        "# a diagnostic\n"
        "1..6\n")
    assert [p.number for p in tap.points] == [1, 2, 3, 4, 5, 6]
    assert tap.points[0].description == "first"
    assert tap.points[2].skipped and tap.points[2].reason == "linux.sysctl not set"
    assert tap.points[3].skipped
    assert tap.points[4].todo and not tap.points[4].failed
    assert tap.points[5].description == "sixth" and tap.points[5].ok
    assert (tap.passed, tap.failed, tap.skipped, tap.todo) == (2, 1, 2, 2)
    assert tap.plan == 6
    assert tap.diagnostics == ["a diagnostic"]


def test_yaml_attaches_to_point_even_after_continuation_line():
    # the state program's descriptions contain a newline ("Refer to: ...")
    tap = rt.parse_tap(
        "TAP version 13\n"
        "not ok 1 - state MUST generate an error\n"
        "Refer to: https://example/runtime.md#query-state\n"
        "  ---\n"
        "  {\n"
        '    "error": "exit status 1",\n'
        '    "stderr": "boom\\n"\n'
        "  }\n"
        "  ...\n"
        "1..1\n")
    assert tap.orphan_yaml == []
    assert rt.parse_yaml_block(tap.points[0].yaml)["error"] == "exit status 1"


def test_orphan_yaml_error_without_points():
    # hooks/poststart print a YAML error block and "1..0" when they fail
    text = ("TAP version 13\n"
            "  ---\n"
            "  {\n"
            '    "error": "Hooks MUST be called in the listed order\\nRefer to: x"\n'
            "  }\n"
            "  ...\n"
            "1..0\n")
    tap = rt.parse_tap(text)
    assert tap.points == [] and tap.plan == 0
    assert tap.orphan_errors() == ["Hooks MUST be called in the listed order\nRefer to: x"]


def test_second_yaml_after_a_point_is_orphan_and_nested_tap_is_ignored():
    text = ("ok 1 - a\n"
            "  ---\n"
            "  {\"stdout\": \"TAP version 13\\nnot ok 1 - inner\"}\n"
            "  ...\n"
            "  ---\n"
            "  {\"actual\": \"x\"}\n"
            "  ...\n"
            "    not ok 1 - indented subtest line\n"
            "1..1\n")
    tap = rt.parse_tap(text)
    assert len(tap.points) == 1 and tap.failed == 0
    assert len(tap.orphan_yaml) == 1 and tap.orphan_errors() == []


def test_yaml_plain_key_values():
    assert rt.parse_yaml_block("error: oops\nreference: 'x'") == {"error": "oops", "reference": "x"}


def test_two_concatenated_streams_sum_their_plans():
    # linux_cgroups_cpus prints "1..112", then "TAP version 13" and "1..0"
    text = "TAP version 13\nok 1 - a\nok 2 - b\n1..2\nTAP version 13\n1..0\n"
    res = rt.evaluate("linux_cgroups_cpus", text, 0, False)
    assert res.plan == 2 and res.failures == [] and res.status == "pass"


def test_bail_out():
    res = rt.evaluate("create", "TAP version 13\nok 1 - a\nBail out! runtime vanished\n", 0, False)
    assert [f.text for f in res.failures] == ["bail out: runtime vanished"]
    assert res.status.startswith("FAIL")


# ---------------------------------------------------------------- program-level failures

def test_timeout_is_a_failure_even_with_passing_points():
    res = rt.evaluate("kill", "TAP version 13\nok 1 - a\n", -9, True)
    assert res.ok == 1
    assert [(f.kind, f.text, f.known) for f in res.failures] == [("program", "timeout", None)]
    assert res.status == "FAIL (timeout)"


def test_nonzero_exit_is_a_failure():
    res = rt.evaluate("linux_mount_label", "", 1, False, "failed to create the container\nexit status 1\n")
    assert [f.text for f in res.failures] == ["exit 1"]
    assert "failed to create" in res.failures[0].detail
    assert rt.evaluate("start", "ok 1 - a\n", -11, False).failures[0].text == "signal 11"


def test_missing_or_short_plan_is_incomplete():
    res = rt.evaluate("start", "TAP version 13\nok 1 - a\nok 2 - b\n", 0, False)
    assert res.failures[0].text.startswith("incomplete")
    res = rt.evaluate("start", "TAP version 13\n1..3\nok 1 - a\n", 0, False)
    assert res.failures[0].text == "incomplete: plan 1..3, 1 points"


def test_silent_success_of_a_fail_program_passes():
    # process_rlimits_fail prints nothing and exits 0 when the runtime refuses the config
    res = rt.evaluate("process_rlimits_fail", "", 0, False)
    assert res.failures == [] and res.status == "pass"


def test_skip_all_plan_passes():
    res = rt.evaluate("default", "TAP version 13\n1..0 # SKIP not on this OS\n", 0, False)
    assert res.failures == [] and res.status == "pass"


# ---------------------------------------------------------------- known failures

@pytest.mark.parametrize("program,description,number,category", [
    ("linux_cgroups_memory", "memory kernel is set correctly", 6, rt.MACHINE_LACKS),
    ("linux_cgroups_memory", "memory kernelTCP is set correctly", 7, rt.MACHINE_LACKS),
    ("linux_cgroups_relative_memory", "memory kernel is set correctly", 6, rt.MACHINE_LACKS),
    ("linux_cgroups_memory", "memory limit is set correctly", 1, None),
    ("linux_cgroups_pids", "pids limit is set correctly", 3, rt.SUITE_BUG),
    ("linux_cgroups_relative_pids", "pids limit is set correctly", 3, rt.SUITE_BUG),
    ("delete_resources", "pids limit is set correctly", 3, rt.SUITE_BUG),
    ("delete_resources", "something else", 1, None),
    ("misc_props", "MUST NOT generate an error if they encounter an unknown annotation key", 1, rt.SUITE_BUG),
    ("misc_props", "MUST NOT generate an error if they encounter an unknown annotation key", 2, None),
    ("pidfile", "create with '--pid-file' option works", 1, rt.SUITE_BUG),
    ("process_rlimits", "has expected soft RLIMIT_NOFILE", 13, rt.SUITE_BUG),
    ("process_rlimits", "has expected soft RLIMIT_CORE", 14, None),
    ("linux_cgroups_relative_blkio", "exit status 1", 1, rt.MACHINE_LACKS),
    ("linux_cgroups_relative_hugetlb", "exit status 1", 2, rt.MACHINE_LACKS),
    ("linux_cgroups_relative_network", "exit status 1", 1, rt.MACHINE_LACKS),
    ("linux_cgroups_devices", "devices c 10:229 rwm is set correctly", 3, None),
    ("hooks_stdin", 'the state of the container MUST be passed to "prestart" hook over stdin', 1, None),
    ("delete", "attempting to `delete` a container that is not `stopped` MUST generate an error", 2, None),
])
def test_point_classification(program, description, number, category):
    k = rt.classify_point(program, rt.TestPoint(False, number, description))
    assert (k.category if k else None) == category


@pytest.mark.parametrize("program,text,category", [
    ("hooks", "error: Hooks MUST be called in the listed order Refer to: x", rt.SUITE_BUG),
    ("hooks", "timeout", None),
    ("prestart", "error: Pre-start hooks MUST be called after the `start` operation is called", rt.SUITE_BUG),
    ("poststart", "error: The post-start hooks MUST be called before the `start` operation returns", None),
    ("linux_cgroups_blkio", "exit 1", rt.MACHINE_LACKS),
    ("linux_cgroups_hugetlb", "exit 1", rt.MACHINE_LACKS),
    ("linux_cgroups_network", "timeout", rt.MACHINE_LACKS),
    ("linux_process_apparmor_profile", "exit 1", rt.MACHINE_LACKS),
    ("process_capabilities", "exit 1", rt.MACHINE_LACKS),
    ("process_capabilities_fail", "exit 1", rt.SUITE_BUG),
    ("linux_mount_label", "exit 1", None),
])
def test_program_level_classification(program, text, category):
    k = rt.classify_program_failure(program, text)
    assert (k.category if k else None) == category


def test_mixed_known_and_own_failures_in_one_program():
    text = ("TAP version 13\n"
            "ok 1 - memory limit is set correctly\n"
            "not ok 2 - memory kernel is set correctly\n"
            "not ok 3 - memory swappiness is set correctly\n"
            "1..3\n")
    res = rt.evaluate("linux_cgroups_memory", text, 0, False)
    assert [f.known for f in res.failures] == [rt.MACHINE_LACKS, None]
    assert res.status == "FAIL [1 own, 1 known]"
    only_known = rt.evaluate("linux_cgroups_memory", text.replace("not ok 3", "ok 3"), 0, False)
    assert only_known.status == "known: machine lacks"


def test_hooks_program_error_is_known_suite_bug():
    text = ('TAP version 13\n  ---\n  {\n    "error": "Hooks MUST be called in the listed order"\n'
            "  }\n  ...\n1..0\n")
    res = rt.evaluate("hooks", text, 0, False)
    assert res.program_errors == 1 and not res.own_failures
    assert res.status == "known: suite bug (error)"


def test_totals_and_table():
    results = [
        rt.evaluate("create", "ok 1 - a\nok 2 # SKIP b\n1..2\n", 0, False),
        rt.evaluate("pidfile", "not ok 1 - create with '--pid-file' option works\n1..1\n", 0, False),
        rt.evaluate("linux_cgroups_blkio", "TAP version 13\n1..0\n", 1, False),
        rt.evaluate("delete", "ok 1 - a\nnot ok 2 - b\n1..2\n", 0, False),
    ]
    t = rt.totals(results)
    assert (t["ok"], t["not_ok"], t["skip"], t["program_errors"]) == (2, 2, 1, 1)
    assert (t["known_suite_bug"], t["known_machine_lacks"], t["own_failures"]) == (1, 1, 1)
    assert (t["programs_clean"], t["programs_clean_but_known"], t["programs_with_own_failures"]) == (1, 2, 1)
    table = rt.format_table(results)
    assert "known: suite bug" in table and "known: machine lacks (exit 1)" in table
    summary = rt.format_summary(results)
    assert "delete: #2 b" in summary and "pidfile" not in summary


# ---------------------------------------------------------------- end to end on a fake suite

def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_main_on_a_fake_suite(tmp_path, monkeypatch, capsys):
    suite = tmp_path / "suite"
    (suite / "validation" / "util").mkdir(parents=True)
    _script(suite / "runtimetest", "exit 0\n")
    (suite / f"rootfs-{rt.goarch()}.tar.gz").write_bytes(b"")
    _script(suite / "validation" / "good" / "good.t",
            'test -n "$RUNTIME" && test -f runtimetest || exit 3\n'
            "printf 'TAP version 13\\nok 1 - a\\nok 2 # SKIP b\\n1..2\\n'\n")
    _script(suite / "validation" / "bad" / "bad.t", "printf 'not ok 1 - nope\\n1..1\\n'\n")
    _script(suite / "validation" / "hang" / "hang.t", "echo 'ok 1 - started'\nexec sleep 30\n")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = tmp_path / "out.json"
    rc = rt.main(["--runtime", "true", "--suite", str(suite), "--timeout", "1",
                  "--no-cleanup", "--json", str(out)])
    assert rc == 1
    doc = json.loads(out.read_text())
    status = {p["name"]: p["status"] for p in doc["programs"]}
    assert status == {"bad": "FAIL", "good": "pass", "hang": "FAIL (timeout)"}
    assert doc["totals"]["ok"] == 2 and doc["totals"]["not_ok"] == 1
    assert os.path.isabs(doc["runtime"]) and doc["runtime"].endswith("/true")
    assert "hang" in capsys.readouterr().out
    assert rt.main(["--runtime", "true", "--suite", str(suite), "--only", "good",
                    "--no-cleanup"]) == 0
    assert rt.main(["--runtime", "true", "--suite", str(suite), "--only", "nosuch"]) == 2


def test_main_refuses_an_unbuilt_suite(tmp_path, capsys):
    (tmp_path / "validation" / "x").mkdir(parents=True)
    (tmp_path / "validation" / "x" / "x.go").write_text("package main\n")
    assert rt.main(["--runtime", "true", "--suite", str(tmp_path), "--no-cleanup"]) == 2
    assert "not built" in capsys.readouterr().err
