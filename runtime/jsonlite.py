"""json.loads/json.dumps on the C accelerator alone, without importing json.

The json package compiles regular expressions at import time (it imports re): about 10 ms on
every CLI call, where runc's whole `state` takes 5. The C scanner and encoder in _json do the
real work either way; this module only supplies the bits json's Python layer would.
"""

import _json

_WS = " \t\n\r"


class _Ctx:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan = _json.make_scanner(_Ctx())


def loads(data: bytes | str):
    """Parse one JSON document; ValueError (with a position) when it is not valid JSON."""
    if isinstance(data, (bytes, bytearray)):  # a UTF-8 BOM is allowed (without its codec: 0.1 ms)
        s = (data[3:] if data[:3] == b"\xef\xbb\xbf" else data).decode()
    else:
        s = data
    i = 0
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = _scan(s, i)
    except (StopIteration, ValueError, SystemError):
        return _slow_loads(s)  # invalid JSON: let json itself say where and why
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        return _slow_loads(s)
    return obj


def _slow_loads(s: str):
    import json
    return json.loads(s)


def _default(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


# make_encoder(markers, default, encoder, indent, key_separator, item_separator, sort_keys,
#              skipkeys, allow_nan)
_compact = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ":", ",",
                              False, False, True)
_spaced = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ": ", ", ",
                             False, False, True)


def dumps(obj, compact: bool = False) -> str:
    """Like json.dumps(obj) (", " / ": " separators), or with compact=True ("," / ":")."""
    return "".join((_compact if compact else _spaced)(obj, 0))


def dumps_indent(obj, indent: str = "  ", _level: int = 0) -> str:
    """json.dumps(obj, indent=...) for the small documents runp prints (state, features)."""
    pad = indent * (_level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{_json.encode_basestring_ascii(str(k))}: {dumps_indent(v, indent, _level + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent * _level + "}"
    if isinstance(obj, list) and obj:
        items = [pad + dumps_indent(v, indent, _level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + indent * _level + "]"
    return dumps(obj)
