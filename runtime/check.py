"""`runp check`: validate a bundle's config.json against the runtime-spec JSON Schema.

The schemas are runp's own (schemas/*.json, written from the runtime-spec 1.3 text). jsonschema
is imported only here, inside the functions: it is slow to import and `runp check` is the only
command that needs it. Every problem is reported, one line each, in the runtime's error format
`config.json: <json.path>: <problem>`, sorted by path.
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from .errors import json_type

PathParts = tuple  # of str (object keys) and int (array indices)

_TYPE_ARTICLES = {"string": "a string", "integer": "an integer", "number": "a number",
                  "boolean": "a boolean", "array": "an array", "object": "an object",
                  "null": "null"}


def schema_dir() -> Path:
    """Where the schema files are: <checkout>/schemas, or runtime/schemas when installed."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "schemas"
    if (here.parent / "pyproject.toml").is_file() and (checkout / "config-schema.json").is_file():
        return checkout
    installed = here / "schemas"
    if (installed / "config-schema.json").is_file():
        return installed
    if (checkout / "config-schema.json").is_file():
        return checkout
    raise FileNotFoundError(f"runp: JSON schemas not found in {checkout} or {installed}")


@functools.lru_cache(maxsize=None)
def _validator(name: str):
    """A validator for schemas/<name>, with every schema file registered for $ref."""
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    d = schema_dir()
    resources = []
    root = None
    for f in sorted(d.glob("*.json")):
        doc = json.loads(f.read_text())
        # All files are draft 2020-12. "$schema" is dropped so that following a $ref into another
        # file keeps our validator class (jsonschema would switch to the stock class for it).
        doc.pop("$schema", None)
        resources.append((doc["$id"], DRAFT202012.create_resource(doc)))
        if f.name == name:
            root = doc
    if root is None:
        raise FileNotFoundError(f"runp: {d / name} not found")
    registry = Registry().with_resources(resources)
    base = jsonschema.Draft202012Validator
    # JSON integers only: Python's json gives 1.0 as a float, which Go (and runp) reject for ints.
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool))
    cls = jsonschema.validators.extend(base, type_checker=checker)
    return cls(root, registry=registry)


# --- error formatting ---------------------------------------------------------------------------

def format_path(parts: Iterable) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def _show(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _one_of(values: list) -> str:
    shown = [_show(v) for v in values[:10]]
    if len(values) > 10:
        shown.append("...")
    return ", ".join(shown)


def _lookup(doc: Any, parts: Iterable) -> Any:
    for p in parts:
        try:
            doc = doc[p]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _describe(err, doc: Any) -> tuple[PathParts, str]:
    """(path, problem) for one jsonschema ValidationError."""
    path = tuple(err.absolute_path)
    kw = err.validator
    schema = err.schema if isinstance(err.schema, dict) else {}
    inst = err.instance
    custom = schema.get("errorMessage")
    # propertyNames errors carry the key as instance and the object's path: name the key.
    if "propertyNames" in err.absolute_schema_path and isinstance(inst, str) \
            and isinstance(_lookup(doc, path), dict):
        if kw == "enum":
            reason = f"must be one of: {_one_of(err.validator_value)}"
        elif kw == "minLength":
            reason = "must not be empty"
        else:
            reason = err.message
        return (path + (inst,) if inst else path), f"{_show(inst)} is not a valid key: {reason}"
    if isinstance(custom, dict) and kw in custom:
        return path, custom[kw].replace("{value}", _show(inst))
    if kw == "required":
        missing = [p for p in err.validator_value
                   if isinstance(inst, dict) and p not in inst and err.message.startswith(repr(p))]
        return (path + (missing[0],), "is required") if missing else (path, err.message)
    if kw == "dependentRequired":
        m = re.match(r"'(.*)' is a dependency of '(.*)'$", err.message)
        if m:
            return path + (m.group(2),), f"requires {m.group(1)} to be set too"
        return path, err.message
    if kw == "type":
        want = err.validator_value
        want = [want] if isinstance(want, str) else list(want)
        return path, f"must be {' or '.join(_TYPE_ARTICLES.get(w, w) for w in want)}, not {json_type(inst)}"
    if kw == "enum":
        return path, f"{_show(inst)} is not one of: {_one_of(err.validator_value)}"
    if kw == "const":
        return path, f"must be {_show(err.validator_value)}"
    if kw in ("minimum", "maximum"):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and hi is not None:
            return path, f"{_show(inst)} is out of range: must be between {lo} and {hi}"
        return path, f"must be {'>=' if kw == 'minimum' else '<='} {err.validator_value}"
    if kw == "minLength":
        return path, "must not be empty" if err.validator_value == 1 else \
            f"must be at least {err.validator_value} characters long"
    if kw == "minItems":
        n = err.validator_value
        return path, "must contain at least one element" if n == 1 else f"must contain at least {n} elements"
    if kw == "pattern":
        return path, f"{_show(inst)} does not match {err.validator_value}"
    if kw in ("anyOf", "oneOf") and err.context:
        import jsonschema
        best = jsonschema.exceptions.best_match(err.context)
        p, msg = _describe(best, doc)
        return p, msg
    if kw == "not":
        return path, f"{_show(inst)} is not allowed here"
    if kw == "additionalProperties":
        return path, err.message
    return path, err.message


def _sort_key(item: tuple[PathParts, str]):
    parts, msg = item
    return tuple((1, p, "") if isinstance(p, int) else (0, 0, p) for p in parts), msg


def _schema_problems(name: str, doc: Any) -> list[tuple[PathParts, str]]:
    v = _validator(name)
    return [_describe(e, doc) for e in v.iter_errors(doc)]


def _lines(file: str, problems: Iterable[tuple[PathParts, str]]) -> list[str]:
    out: list[str] = []
    for parts, msg in sorted(set(problems), key=_sort_key):
        p = format_path(parts)
        line = f"{file}: {p}: {msg}" if p else f"{file}: {msg}"
        if line not in out:
            out.append(line)
    return out


# --- checks the schema cannot express -----------------------------------------------------------

def _semantic_problems(doc: Any, bundle: str) -> list[tuple[PathParts, str]]:
    out: list[tuple[PathParts, str]] = []
    if not isinstance(doc, dict):
        return out
    root = doc.get("root")
    if isinstance(root, dict) and isinstance(root.get("path"), str) and root["path"]:
        rp = root["path"]
        full = os.path.normpath(rp if os.path.isabs(rp) else os.path.join(bundle, rp))
        if not os.path.isdir(full):
            what = "is not a directory" if os.path.exists(full) else "does not exist"
            out.append((("root", "path"), f"{full} {what}"))

    mounts = doc.get("mounts")
    if isinstance(mounts, list):
        for i, m in enumerate(mounts):
            dest = m.get("destination") if isinstance(m, dict) else None
            if isinstance(dest, str) and dest and not dest.startswith("/") and "windows" not in doc:
                out.append((("mounts", i, "destination"),
                            f"{_show(dest)} is not an absolute path (relative destinations are "
                            "deprecated; runtimes take them relative to /)"))

    proc = doc.get("process")
    if isinstance(proc, dict) and isinstance(proc.get("rlimits"), list):
        seen: dict[str, int] = {}
        for i, r in enumerate(proc["rlimits"]):
            if not isinstance(r, dict):
                continue
            t = r.get("type")
            if isinstance(t, str):
                if t in seen:
                    out.append((("process", "rlimits", i, "type"),
                                f"duplicate rlimit {_show(t)} (also at process.rlimits[{seen[t]}])"))
                else:
                    seen[t] = i
            soft, hard = r.get("soft"), r.get("hard")
            if _is_int(soft) and _is_int(hard) and soft > hard:
                out.append((("process", "rlimits", i),
                            f"soft limit {soft} is greater than hard limit {hard}"))

    if isinstance(proc, dict):
        out += _capability_problems(proc.get("capabilities"))

    linux = doc.get("linux")
    if isinstance(linux, dict):
        nss = linux.get("namespaces")
        if isinstance(nss, list):
            seen = {}
            for i, ns in enumerate(nss):
                t = ns.get("type") if isinstance(ns, dict) else None
                if isinstance(t, str):
                    if t in seen:
                        out.append((("linux", "namespaces", i, "type"),
                                    f"duplicate namespace {_show(t)} (also at linux.namespaces[{seen[t]}])"))
                    else:
                        seen[t] = i
        res = linux.get("resources")
        cpu = res.get("cpu") if isinstance(res, dict) else None
        if isinstance(cpu, dict):
            quota, burst = cpu.get("quota"), cpu.get("burst")
            if _is_int(quota) and _is_int(burst) and quota > 0 and burst > quota:
                out.append((("linux", "resources", "cpu", "burst"),
                            f"burst {burst} is larger than quota {quota}"))
    return out


def _capability_problems(caps: Any) -> list[tuple[PathParts, str]]:
    """Capabilities this host cannot grant: create drops them with a warning (config.md says
    it SHOULD NOT fail), `check` reports them, so a config that asks for them is noticed."""
    from .errors import ConfigError
    from .linux import capabilities
    try:
        found = capabilities.unavailable(caps)
    except ConfigError:  # a wrong type: the schema names it
        return []
    out: list[tuple[PathParts, str]] = []
    for path, problem in found:
        parts = _split_path(path)
        name = _lookup(caps, parts[2:])  # below process.capabilities
        if isinstance(name, str) and re.match(r"CAP_[A-Z0-9_]+$", name):  # else: the schema's
            out.append((parts, problem))
    return out


def _split_path(path: str) -> PathParts:
    """"process.capabilities.bounding[2]" -> ("process", "capabilities", "bounding", 2)."""
    parts: list = []
    for key in path.split("."):
        name, *idx = key.replace("]", "").split("[")
        parts.append(name)
        parts.extend(int(i) for i in idx)
    return tuple(parts)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- entry points -------------------------------------------------------------------------------

def check_bundle(bundle: str) -> list[str]:
    """Every problem with <bundle>/config.json, one line each; [] when it is valid."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [f"{path}: no such file or directory"]
    except OSError as e:
        return [f"{path}: {e.strerror or e}"]
    try:
        doc = json.loads(data)
    except ValueError as e:
        return [f"config.json: invalid JSON: {e}"]
    problems = _schema_problems("config-schema.json", doc)
    problems += _semantic_problems(doc, bundle)
    return _lines("config.json", problems)
