"""runtime.linux.capabilities, for real: each apply() runs in a forked child (it is one-way)."""
from __future__ import annotations

import json
import os
import select
import signal
import time

import pytest

from runtime.errors import ConfigError
from runtime.linux import capabilities as caps

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

UID = 1000


def run_child(fn, timeout: float = 10.0) -> tuple[int, list]:
    """Run fn(send) in a forked child; return (exit code, objects it sent).

    The child always ends in os._exit and the parent always reaps it (SIGKILL on timeout).
    The pipe is close-on-exec, so a child that execs just stops reporting.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)

            def send(obj) -> None:
                data = (json.dumps(obj) + "\n").encode()
                while data:
                    data = data[os.write(w, data):]

            try:
                fn(send)
            except BaseException as e:  # report, never propagate into pytest's copy
                code = 1
                send({"error": f"{type(e).__name__}: {e}", "errno": getattr(e, "errno", None)})
        finally:
            os._exit(code)
    os.close(w)
    buf = b""
    done = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                done = True
                break
            buf += chunk
    finally:
        os.close(r)
        if not done:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert done, "child timed out"
    return os.waitstatus_to_exitcode(status), [json.loads(x) for x in buf.splitlines()]


def status_caps(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        if line.startswith("Cap"):
            key, val = line.split(":", 1)
            out[key] = int(val, 16)
        elif line.startswith("Uid:"):
            out["Uid"] = int(line.split()[1])
    return out


def read_status() -> dict[str, int]:
    with open("/proc/self/status") as f:
        return status_caps(f.read())


def to_uid(uid: int = UID):
    def switch() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return switch


def noop() -> None:
    pass


def m(*names: str) -> int:
    return caps.mask(frozenset(caps.CAPS[n] for n in names))


CONFIG = {
    "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_KILL"],
    "effective": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
    "permitted": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_KILL"],
    "inheritable": ["CAP_NET_BIND_SERVICE"],
    "ambient": ["CAP_NET_BIND_SERVICE"],
}


def test_caps_table() -> None:
    assert sorted(caps.CAPS.values()) == list(range(41))
    assert caps.CAPS["CAP_CHOWN"] == 0 and caps.CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.CAPS["CAP_SYS_ADMIN"] == 21 and caps.CAPS["CAP_BPF"] == 39


def test_apply_then_switch_to_uid_1000() -> None:
    sets = caps.parse(CONFIG)

    def child(send) -> None:
        caps.apply(sets, to_uid())
        send(read_status())

    code, out = run_child(child)
    assert code == 0, out
    st = out[0]
    assert st["Uid"] == UID
    assert st["CapBnd"] == m(*CONFIG["bounding"])
    assert st["CapEff"] == m(*CONFIG["effective"])
    assert st["CapPrm"] == m(*CONFIG["permitted"])
    assert st["CapInh"] == m(*CONFIG["inheritable"])
    assert st["CapAmb"] == m(*CONFIG["ambient"])


def test_ambient_survives_exec_as_non_root() -> None:
    """What the container process sees after exec: P = E = ambient for a non-root user."""
    sets = caps.parse(CONFIG)

    def child(send) -> None:
        caps.apply(sets, to_uid())
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(wfd, 1)
                os.execv("/bin/busybox", ["grep", "^Cap", "/proc/self/status"])
            finally:
                os._exit(127)
        os.close(wfd)
        data = b""
        while chunk := os.read(rfd, 4096):
            data += chunk
        os.waitpid(pid, 0)
        send(status_caps(data.decode()))

    code, out = run_child(child)
    assert code == 0, out
    st = out[0]
    amb = m("CAP_NET_BIND_SERVICE")
    assert st == {"CapBnd": m(*CONFIG["bounding"]), "CapEff": amb, "CapPrm": amb,
                  "CapInh": amb, "CapAmb": amb}


def test_empty_object_drops_everything_even_for_root() -> None:
    """podman sends `capabilities: {}` for --cap-drop ALL."""
    sets = caps.parse({})
    assert sets == caps.CapSets()

    def child(send) -> None:
        caps.apply(sets, noop)
        send(read_status())

    code, out = run_child(child)
    assert code == 0, out
    st = out[0]
    assert st["Uid"] == 0
    assert st["CapBnd"] == st["CapEff"] == st["CapPrm"] == st["CapInh"] == st["CapAmb"] == 0


def test_absent_capabilities_leave_sets_alone() -> None:
    assert caps.parse(None) is None
    before = read_status()

    def child(send) -> None:
        caps.apply(None, noop)
        send(read_status())

    code, out = run_child(child)
    assert code == 0, out
    assert out[0] == before


def test_keepcaps_is_cleared_after_switch() -> None:
    sets = caps.parse(CONFIG)

    def child(send) -> None:
        caps.apply(sets, to_uid())
        from runtime.linux import sys as lsys
        send(lsys.prctl(7))  # PR_GET_KEEPCAPS

    code, out = run_child(child)
    assert code == 0, out
    assert out == [0]


def test_ambient_not_in_inheritable_fails_or_warns() -> None:
    sets = caps.parse({**CONFIG, "inheritable": []})

    def strict(send) -> None:
        caps.apply(sets, to_uid())

    code, out = run_child(strict)
    assert code == 1
    assert out[0]["errno"] == 1
    assert "cannot raise ambient capability CAP_NET_BIND_SERVICE" in out[0]["error"]

    def lenient(send) -> None:
        warnings: list[str] = []
        caps.apply(sets, to_uid(), warn=warnings.append)
        send({"warnings": warnings, "status": read_status()})

    code, out = run_child(lenient)
    assert code == 0, out
    assert out[0]["warnings"] == [
        "cannot raise ambient capability CAP_NET_BIND_SERVICE: Operation not permitted"]
    assert out[0]["status"]["CapAmb"] == 0
    assert out[0]["status"]["CapEff"] == m(*CONFIG["effective"])


def test_effective_outside_permitted_is_an_error() -> None:
    sets = caps.parse({**CONFIG, "effective": ["CAP_SETUID"], "permitted": ["CAP_CHOWN"],
                       "ambient": []})

    def child(send) -> None:
        caps.apply(sets, to_uid())

    code, out = run_child(child)
    assert code == 1
    assert out[0]["errno"] == 1 and "capset" in out[0]["error"]


def err(cfg) -> str:
    with pytest.raises(ConfigError) as e:
        caps.parse(cfg)
    return str(e.value)


def test_parse_unknown_name() -> None:
    assert err({"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_FOO"]}) == (
        'config.json: process.capabilities.bounding[2]: unknown capability "CAP_FOO"')
    assert err({"effective": ["chown"]}) == (
        'config.json: process.capabilities.effective[0]: unknown capability "chown"')


@pytest.mark.skipif(caps.host_bounding() >> 24 & 1 == 1, reason="host has CAP_SYS_RESOURCE")
def test_parse_capability_missing_on_host() -> None:
    assert err({"permitted": ["CAP_CHOWN", "CAP_SYS_RESOURCE"]}) == (
        "config.json: process.capabilities.permitted[1]: "
        'capability "CAP_SYS_RESOURCE" is not available on this host')


def test_parse_wrong_types() -> None:
    assert err(["CAP_CHOWN"]) == "config.json: process.capabilities: must be an object, not array"
    assert err({"bounding": "CAP_CHOWN"}) == (
        "config.json: process.capabilities.bounding: must be an array, not string")
    assert err({"ambient": ["CAP_CHOWN", 5]}) == (
        "config.json: process.capabilities.ambient[1]: must be a string, not integer")
    with pytest.raises(ConfigError) as e:
        caps.parse({"inheritable": [None]}, path="process.caps")
    assert str(e.value) == "config.json: process.caps.inheritable[0]: must be a string, not null"


def test_parse_warn_drops_instead_of_failing() -> None:
    """runtime-spec 1.3: ungrantable capabilities are logged, not fatal (runc does this)."""
    warnings: list[str] = []
    cfg = {"bounding": ["CAP_CHOWN", "CAP_FOO"], "effective": ["CAP_CHOWN"]}
    sets = caps.parse(cfg, warn=warnings.append)
    assert sets == caps.CapSets(bounding=frozenset({0}), effective=frozenset({0}))
    assert warnings == [
        'config.json: process.capabilities.bounding[1]: unknown capability "CAP_FOO"']
    with pytest.raises(ConfigError):  # types stay fatal
        caps.parse({"bounding": [1]}, warn=warnings.append)


def test_parse_absent_sets_are_empty() -> None:
    sets = caps.parse({"bounding": ["CAP_KILL"], "ambient": None})
    assert sets == caps.CapSets(bounding=frozenset({5}))
