"""Hostile input for runp's JSON readers: mutations of valid documents and of their raw bytes
(hypothesis strategies), the seed corpus in tests/fuzz_corpus/, and the property every input
must satisfy: runp accepts it, or it fails with exit status 1 and ONE line naming the file (and,
where a value is at fault, its JSON path). Used by tests/test_fuzz_*.py and hack/fuzz.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"

# JSON values as hostile writers produce them: wrong types, huge and negative numbers,
# empty/odd strings (path-like, with NUL, non-ASCII), nesting
_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 32, 2 ** 63, -(2 ** 63), 2 ** 64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "/", "..", "../../etc", "/proc/self/exe", "\0", "a\0b", "rootfs",
                     "ALL", "CAP_SYS_ADMIN", "0", "-1", "1.0.0", "1.3.0", "bind", "tmpfs",
                     "ro", "rbind", "private", "default", "x" * 300]),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)


def load_seeds(kind: str) -> list:
    """The corpus documents of one kind ("config", "process", "resources", "state"): every
    tests/fuzz_corpus/<kind>-*.json (seeds, and inputs that once crashed runp)."""
    return [json.loads(p.read_text()) for p in sorted(CORPUS.glob(f"{kind}-*.json"))]


def _paths(doc, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw, seeds: list):
    """A seed with 1-4 structural mutations: a node replaced by another JSON value, removed,
    given a new key or item, duplicated, or its type changed."""
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["replace", "replace", "remove", "add", "dup", "wrap"]))
        if not path:
            if op == "replace" and draw(st.integers(0, 9)) == 0:
                doc = draw(json_values)
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        node = parent[key]
        if op == "replace":
            parent[key] = draw(json_values)
        elif op == "remove":
            del parent[key]
        elif op == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=10))] = draw(json_values)
        elif op == "add" and isinstance(node, list):
            node.insert(draw(st.integers(0, len(node))), draw(json_values))
        elif op == "dup" and isinstance(node, list) and node:
            node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
        elif op == "wrap":
            parent[key] = [node] if draw(st.booleans()) else {"x": node}
    return doc


@st.composite
def raw_bytes(draw, seeds: list) -> bytes:
    """A seed's JSON text with bytes flipped, inserted or cut (or cut short)."""
    data = bytearray(json.dumps(draw(st.sampled_from(seeds))).encode())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from(
                [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u0000", b"\xff", b"1e999"]))
        elif op == "delete" and data:
            del data[i:i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[i:]
    return bytes(data)


def inputs(seeds: list):
    """Three structural mutations to one of raw bytes: most bytes mutations only find the
    JSON scanner's "invalid JSON", the structural ones reach every reader of every field."""
    return st.one_of(mutated(seeds), mutated(seeds), mutated(seeds), raw_bytes(seeds))


def as_bytes(doc) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def one_line_error(text: str, names: tuple[str, ...]) -> str | None:
    """What is wrong with a failure's output, or None: one line (besides warnings), no
    traceback or internal error, and naming one of `names` (the file, or the flag it came in
    by)."""
    # warnings (an unknown capability is one: config.md) may come first; the error is one line
    lines = [ln for ln in text.strip().splitlines()
             if ln.strip() and "level=warning" not in ln and not ln.startswith("WARN")]
    if "Traceback" in text or "internal error" in text:
        return f"a crash: {text.strip()[-800:]}"
    if len(lines) != 1:
        return f"{len(lines)} lines: {text.strip()[:500]}"
    if not any(n in lines[0] for n in names):
        return f"does not name {' or '.join(names)}: {lines[0][:300]}"
    return None
