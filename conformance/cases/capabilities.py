"""The "config: caps" cases: the five capability sets, unknown and ungrantable names (config.md
Linux process)."""
from __future__ import annotations

from harness import CAP_NUMBERS, T, cap_mask, kv_lines, read
from registry import case, check, eq


C = "config: caps"


def _caps(text: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in kv_lines(text.replace(":\t", "=")).items() if k.startswith("Cap")}


@case(C, "caps.sets", "each capability set is exactly the configured one",
      "config.md#linux-process", "effective / bounding / inheritable / permitted ... an array of ... capabilities that are kept for the process.")
def _(t: T):
    b = t.bundle("grep", "^Cap", "/proc/self/status")
    # uid 0 execs with effective = permitted whatever was set before (capabilities(7)), so the
    # config keeps them equal; permitted, inheritable and bounding all differ.
    b.process["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_KILL"]}
    caps = _caps(t.ok_run(b).out)
    for key, field_ in (("bounding", "CapBnd"), ("permitted", "CapPrm"), ("effective", "CapEff"),
                        ("inheritable", "CapInh")):
        eq(hex(caps.get(field_, -1)), hex(cap_mask(b.process["capabilities"][key])), field_)
    eq(caps.get("CapAmb"), 0, "CapAmb")


@case(C, "caps.ambient", "ambient capabilities survive the switch to a non-root user",
      "config.md#linux-process", "ambient (array of strings, OPTIONAL) the ambient field is an array of ambient capabilities that are kept for the process.")
def _(t: T):
    b = t.bundle("grep", "^Cap", "/proc/self/status")
    b.process["user"] = {"uid": 1000, "gid": 1000}
    nb = ["CAP_NET_BIND_SERVICE"]
    b.process["capabilities"] = {k: list(nb) for k in ("bounding", "permitted", "effective",
                                                       "inheritable", "ambient")}
    caps = _caps(t.ok_run(b).out)
    m = cap_mask(nb)
    eq((caps.get("CapAmb"), caps.get("CapEff"), caps.get("CapPrm")), (m, m, m), "CapAmb/CapEff/CapPrm")


@case(C, "caps.none", "an empty capabilities object leaves the process without capabilities",
      "config.md#linux-process", "capabilities (object, OPTIONAL) is an object containing arrays that specifies the sets of capabilities for the process.")
def _(t: T):
    b = t.bundle("grep", "^Cap", "/proc/self/status")
    b.process["capabilities"] = {}
    caps = _caps(t.ok_run(b).out)
    eq({k: v for k, v in caps.items() if v}, {}, "non-empty capability sets")


@case(C, "caps.unknown_warns", "an unknown capability is logged as a warning, create goes on",
      "config.md#linux-process", "Any value which cannot be mapped to a relevant kernel interface, or cannot be granted otherwise MUST be logged as a warning by the runtime.",
      conflict="runtime-tools process_capabilities_fail asserts an error (the pre-1.1 text)")
def _(t: T):
    b = t.bundle("true")
    b.process["capabilities"]["bounding"].append("CAP_NO_SUCH_THING")
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    check(p.rc == 0, f"create failed: {read(t.files[cid], '').strip()[:300]}")
    t.pids[cid] = t.state(cid)["pid"]
    check("CAP_NO_SUCH_THING" in t.output(cid), "no warning names CAP_NO_SUCH_THING")


@case(C, "caps.not_grantable", "a capability the runtime does not have does not fail create",
      "config.md#linux-process", "Runtimes SHOULD NOT fail if the container configuration requests capabilities that cannot be granted", level="SHOULD")
def _(t: T):
    missing = [n for n, i in CAP_NUMBERS.items() if not t.s.caps_bounding >> i & 1 and i <= 40]
    if not missing:
        t.skip("this runtime environment has every capability")
    b = t.bundle("grep", "^CapBnd", "/proc/self/status")
    want = ["CAP_CHOWN", f"CAP_{missing[0]}"]
    b.process["capabilities"] = {k: list(want) for k in ("bounding", "permitted", "effective")}
    r = t.ok_run(b)
    check(_caps(r.out).get("CapBnd", 0) & cap_mask(["CAP_CHOWN"]), f"CapBnd lacks CAP_CHOWN: {r.out}")
