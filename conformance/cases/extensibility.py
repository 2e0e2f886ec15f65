"""The "config: extensibility" cases: unknown properties and values, invalid JSON (config.md
Extensibility, Valid values)."""
from __future__ import annotations

from harness import T
from registry import case, check, eq


X = "config: extensibility"


@case(X, "config.unknown_properties", "unknown properties are ignored",
      "config.md#extensibility", "Runtimes MAY log unknown properties but MUST otherwise ignore them.")
def _(t: T):
    b = t.bundle("echo", "fine")
    b.config["org.example.unknown"] = {"nested": [1, 2, 3]}
    b.process["org.example.field"] = True
    b.linux["org.example.field"] = "x"
    b.config["mounts"][0]["org.example.field"] = 1
    eq(t.ok_run(b).out.strip(), "fine", "output")


@case(X, "config.unknown_annotations", "unknown annotation keys are handled like any unknown property",
      "config.md#annotations", "Runtimes MUST handle unknown annotation keys like any other unknown property.")
def _(t: T):
    b = t.bundle("echo", "fine")
    b.config["annotations"] = {"org.opencontainers.made.up": "1", "com.example.x": "y"}
    eq(t.ok_run(b).out.strip(), "fine", "output")


@case(X, "config.invalid_value", "an invalid value (an unknown namespace type) is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("true")
    b.linux["namespaces"].append({"type": "nosuchns"})
    t.create_fails(b, "the namespace type nosuchns does not exist")


@case(X, "config.invalid_json", "a config.json that is not JSON is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("true")
    cid = t._prepare(b, None)
    (b.path / "config.json").write_text("{\"ociVersion\": ")
    p = t._create(b, cid, (), None, None, None)
    check(p.rc != 0, "create accepted a truncated config.json")
    t.assert_gone(cid, "after the failed create")
