"""A small D-Bus client: what the systemd cgroup driver needs, and nothing else.

Method calls and signals over a unix socket, EXTERNAL authentication, and the wire format
(little-endian marshalling of the basic types, arrays, structs, dict entries and variants), after
the D-Bus specification; plus the GVariant text form of values (`uint64 5`, `'strict'`,
`[('/dev/null', 'rw')]`), which runc accepts in org.systemd.property.* annotations.

Why not a library: `create --systemd-cgroup` may cost at most 10% more than `create` (about 30
ms here), and importing one costs more than that on its own (measured with -X importtime on the
development VM: jeepney 0.9 13-15 ms, as it pulls in typing, enum, socket and re; dbus-python
14 ms; sdbus 40 ms). This module imports only _socket and struct and costs about 0.3 ms.
"""
from __future__ import annotations

import os
import struct

# message types and header fields (D-Bus specification, "Message Format")
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
NO_REPLY_EXPECTED = 0x1
_F_PATH, _F_INTERFACE, _F_MEMBER, _F_ERROR_NAME, _F_REPLY_SERIAL = 1, 2, 3, 4, 5
_F_DESTINATION, _F_SENDER, _F_SIGNATURE = 6, 7, 8
_FIELD_SIG = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}

_FIXED = {"y": ("B", 1), "b": ("I", 4), "n": ("h", 2), "q": ("H", 2), "i": ("i", 4),
          "u": ("I", 4), "x": ("q", 8), "t": ("Q", 8), "d": ("d", 8), "h": ("I", 4)}
_ALIGN = {**{k: v[1] for k, v in _FIXED.items()}, "s": 4, "o": 4, "g": 1, "a": 4, "(": 8,
          "{": 8, "v": 1}


class DBusError(Exception):
    """An error reply (name, e.g. org.freedesktop.systemd1.NoSuchUnit, and message), or a
    failure to talk to the bus at all (name "")."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if name else message)
        self.name = name
        self.message = message


# --- signatures ---------------------------------------------------------------------------------

def split_signature(sig: str) -> list[str]:
    """"sa(sv)u" -> ["s", "a(sv)", "u"]: the complete types of a signature."""
    out, i = [], 0
    while i < len(sig):
        j = _type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _type_end(sig: str, i: int) -> int:
    c = sig[i] if i < len(sig) else ""
    if c == "a":
        return _type_end(sig, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        j = i + 1
        while j < len(sig) and sig[j] != close:
            j = _type_end(sig, j)
        if j >= len(sig) or j == i + 1:
            raise ValueError(f"invalid signature {sig!r}")
        return j + 1
    if c and (c in _FIXED or c in "sogv"):
        return i + 1
    raise ValueError(f"invalid signature {sig!r}")


# --- marshalling ----------------------------------------------------------------------------------

class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def pad(self, n: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % n)

    def put(self, t: str, v) -> None:
        c = t[0]
        if c in _FIXED:
            fmt, size = _FIXED[c]
            self.pad(size)
            self.buf += struct.pack("<" + fmt, int(bool(v)) if c == "b" else v)
        elif c in "so":
            data = v.encode()
            self.pad(4)
            self.buf += struct.pack("<I", len(data)) + data + b"\0"
        elif c == "g":
            data = v.encode()
            self.buf += bytes((len(data),)) + data + b"\0"
        elif c == "v":
            vsig, val = v
            self.put("g", vsig)
            self.put(vsig, val)
        elif c == "a":
            elem = t[1:]
            self.pad(4)
            at = len(self.buf)
            self.buf += b"\0\0\0\0"
            self.pad(_ALIGN[elem[0]])
            start = len(self.buf)
            items = v.items() if isinstance(v, dict) else v
            if elem == "y" and isinstance(v, (bytes, bytearray)):
                self.buf += v
            else:
                for item in items:
                    self.put(elem, item)
            struct.pack_into("<I", self.buf, at, len(self.buf) - start)
        elif c in "({":
            self.pad(8)
            for ft, fv in zip(split_signature(t[1:-1]), v):
                self.put(ft, fv)
        else:
            raise ValueError(f"cannot marshal type {t!r}")


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, endian: str = "<") -> None:
        self.data = data
        self.pos = pos
        self.e = endian

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def get(self, t: str):
        c = t[0]
        if c in _FIXED:
            fmt, size = _FIXED[c]
            self.align(size)
            (v,) = struct.unpack_from(self.e + fmt, self.data, self.pos)
            self.pos += size
            return bool(v) if c == "b" else v
        if c in "so":
            n = self.get("u")
            v = self.data[self.pos:self.pos + n].decode()
            self.pos += n + 1
            return v
        if c == "g":
            n = self.data[self.pos]
            v = self.data[self.pos + 1:self.pos + 1 + n].decode()
            self.pos += n + 2
            return v
        if c == "v":
            return self.get(self.get("g"))
        if c == "a":
            n = self.get("u")
            elem = t[1:]
            self.align(_ALIGN[elem[0]])
            end = self.pos + n
            if elem == "y":
                self.pos = end
                return bytes(self.data[end - n:end])
            items = []
            while self.pos < end:
                items.append(self.get(elem))
            return dict(items) if elem[0] == "{" else items
        if c in "({":
            self.align(8)
            return tuple(self.get(ft) for ft in split_signature(t[1:-1]))
        raise ValueError(f"cannot unmarshal type {t!r}")


def marshal(sig: str, values: list) -> bytes:
    """The body for a signature and its values (a variant is a (signature, value) pair)."""
    w = _Writer()
    for t, v in zip(split_signature(sig), values, strict=True):
        w.put(t, v)
    return bytes(w.buf)


class Message:
    __slots__ = ("type", "flags", "serial", "fields", "body")

    def __init__(self, mtype: int, flags: int, serial: int, fields: dict, body: list) -> None:
        self.type = mtype
        self.flags = flags
        self.serial = serial
        self.fields = fields
        self.body = body

    @property
    def member(self) -> str:
        return self.fields.get(_F_MEMBER, "")

    @property
    def reply_serial(self) -> int:
        return self.fields.get(_F_REPLY_SERIAL, 0)


def encode_call(serial: int, destination: str | None, path: str, interface: str, member: str,
                sig: str = "", args: list | None = None, flags: int = 0) -> bytes:
    """One METHOD_CALL message on the wire."""
    body = marshal(sig, args or []) if sig else b""
    fields: list = [(_F_PATH, ("o", path)), (_F_INTERFACE, ("s", interface)),
                    (_F_MEMBER, ("s", member))]
    if destination:
        fields.append((_F_DESTINATION, ("s", destination)))
    if sig:
        fields.append((_F_SIGNATURE, ("g", sig)))
    w = _Writer()
    for t, v in (("y", ord("l")), ("y", METHOD_CALL), ("y", flags), ("y", 1), ("u", len(body)),
                 ("u", serial), ("a(yv)", fields)):
        w.put(t, v)
    w.pad(8)
    return bytes(w.buf) + body


def decode(data: bytes) -> tuple[Message, int] | None:
    """The first complete message in data and its length, or None if data holds less."""
    if len(data) < 16:
        return None
    e = "<" if data[0:1] == b"l" else ">"
    body_len, serial, fields_len = struct.unpack_from(e + "III", data, 4)
    header_end = 16 + fields_len + (-(16 + fields_len) % 8)
    total = header_end + body_len
    if len(data) < total:
        return None
    r = _Reader(data, 12, e)
    fields = dict(r.get("a(yv)"))
    sig = fields.get(_F_SIGNATURE, "")
    body = []
    if sig:
        br = _Reader(data[header_end:total], 0, e)
        body = [br.get(t) for t in split_signature(sig)]
    return Message(data[1], data[2], serial, fields, body), total


# --- connections ----------------------------------------------------------------------------------

def socket_path(address: str) -> str:
    """The unix socket of a D-Bus address ("unix:path=/run/bus,guid=..."; the first usable of a
    ";"-separated list); abstract sockets start with NUL."""
    for entry in address.split(";"):
        kind, _, params = entry.partition(":")
        if kind != "unix":
            continue
        kv = dict(p.partition("=")[::2] for p in params.split(",") if p)
        if "path" in kv:
            return _unescape(kv["path"])
        if "abstract" in kv:
            return "\0" + _unescape(kv["abstract"])
    raise DBusError("", f"no unix socket in D-Bus address {address!r}")


def _unescape(s: str) -> str:
    out, i = bytearray(), 0
    b = s.encode()
    while i < len(b):
        if b[i:i + 1] == b"%" and i + 2 < len(b):
            out.append(int(b[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(b[i])
            i += 1
    return out.decode()


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


class Connection:
    """A blocking connection: to a bus daemon (hello=True: it needs Hello first and routes by
    destination) or straight to a peer such as systemd's private socket (no Hello)."""

    def __init__(self, path: str, hello: bool, timeout: float = 30.0) -> None:
        import _socket
        self._serial = 0
        self._buf = b""
        self.signals: list[Message] = []  # signals read while waiting for something else
        self.timeout = timeout
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(path)
            self._auth()
            if hello:
                self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                          "Hello")
        except OSError as e:
            self.sock.close()
            raise DBusError("", f"{path.lstrip(chr(0))}: {e.strerror or e}") from None
        except DBusError:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def _auth(self) -> None:
        """EXTERNAL: the server checks our credentials on the socket. With the uid we claim
        (in hex digits of its decimal form) the BEGIN can follow at once; inside a user
        namespace our uid is not the one the server sees, so we claim none and answer its
        empty challenge (the specification allows both)."""
        if _in_user_namespace():
            self.sock.sendall(b"\0AUTH EXTERNAL\r\n")
            line = self._line()
            if line.startswith(b"DATA"):
                self.sock.sendall(b"DATA\r\n")
                line = self._line()
            if not line.startswith(b"OK"):
                raise DBusError("", f"authentication refused: {line.decode(errors='replace')}")
            self.sock.sendall(b"BEGIN\r\n")
            return
        uid = str(os.geteuid()).encode().hex().encode()
        self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\nBEGIN\r\n")
        line = self._line()
        if not line.startswith(b"OK"):
            raise DBusError("", f"authentication refused: {line.decode(errors='replace')}")

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            self._recv()
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise DBusError("", "the D-Bus peer closed the connection")
        self._buf += data

    def _next(self) -> Message:
        while True:
            got = decode(self._buf)
            if got is not None:
                msg, n = got
                self._buf = self._buf[n:]
                return msg
            self._recv()

    def send(self, destination: str | None, path: str, interface: str, member: str,
             sig: str = "", args: list | None = None, reply: bool = True) -> int:
        """Send a call; its serial (to match the reply with)."""
        self._serial += 1
        self.sock.sendall(encode_call(self._serial, destination, path, interface, member, sig,
                                      args, 0 if reply else NO_REPLY_EXPECTED))
        return self._serial

    def reply(self, serial: int) -> list:
        """Wait for the reply to a call: its body, or DBusError. Signals that arrive meanwhile
        are kept in self.signals."""
        try:
            while True:
                msg = self._next()
                if msg.type == SIGNAL:
                    self.signals.append(msg)
                elif msg.type in (METHOD_RETURN, ERROR) and msg.reply_serial == serial:
                    if msg.type == ERROR:
                        text = msg.body[0] if msg.body and isinstance(msg.body[0], str) else ""
                        raise DBusError(msg.fields.get(_F_ERROR_NAME, "?"), text)
                    return msg.body
        except OSError as e:
            raise DBusError("", f"D-Bus: {e.strerror or e}") from None

    def call(self, destination: str | None, path: str, interface: str, member: str,
             sig: str = "", args: list | None = None) -> list:
        return self.reply(self.send(destination, path, interface, member, sig, args))

    def wait_signal(self, member: str, match) -> Message:
        """The first signal named `member` for which match(body) is true (kept ones first)."""
        for i, msg in enumerate(self.signals):
            if msg.member == member and match(msg.body):
                return self.signals.pop(i)
        try:
            while True:
                msg = self._next()
                if msg.type == SIGNAL:
                    if msg.member == member and match(msg.body):
                        return msg
                    self.signals.append(msg)
        except OSError as e:
            raise DBusError("", f"D-Bus: {e.strerror or e}") from None


# --- the GVariant text form -------------------------------------------------------------------

_TYPE_WORDS = {"boolean": "b", "byte": "y", "int16": "n", "uint16": "q", "int32": "i",
               "uint32": "u", "int64": "x", "uint64": "t", "double": "d", "string": "s",
               "objectpath": "o", "signature": "g"}
_RANGES = {"y": (0, 255), "n": (-2**15, 2**15 - 1), "q": (0, 2**16 - 1), "i": (-2**31, 2**31 - 1),
           "u": (0, 2**32 - 1), "x": (-2**63, 2**63 - 1), "t": (0, 2**64 - 1)}


def parse_text(text: str) -> tuple[str, object]:
    """A value in GVariant text form -> (D-Bus signature, value), as godbus' ParseVariant does
    it for runc: `true`, `42` (int32), `1.5`, `'str'`, `uint64 5`, `@t 5`, `[1, 2]`,
    `@as []`, `('a', 1)`, `{'k': 1}`, `<5>`. Raises ValueError."""
    p = _TextParser(text)
    sig, val = p.value(None)
    p.skip()
    if p.i != len(p.s):
        raise ValueError(f"unexpected {p.s[p.i:]!r}")
    return sig, val


class _TextParser:
    def __init__(self, s: str) -> None:
        self.s = s
        self.i = 0

    def skip(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.skip()
        return self.s[self.i] if self.i < len(self.s) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise ValueError(f"expected {ch!r} at {self.s[self.i:]!r}")
        self.i += 1

    def word(self) -> str:
        self.skip()
        j = self.i
        while j < len(self.s) and (self.s[j].isalnum() or self.s[j] in "_.+-"):
            j += 1
        return self.s[self.i:j]

    def value(self, want: str | None) -> tuple[str, object]:
        """One value; `want` is the type it must have, when the context says (arrays)."""
        c = self.peek()
        if not c:
            raise ValueError("value missing")
        if c == "@":
            self.i += 1
            j = self.i
            while j < len(self.s) and not self.s[j].isspace():
                j += 1
            sig = self.s[self.i:j]
            split_signature(sig)  # validates
            self.i = j
            return self.value(sig)
        w = self.word()
        if w in _TYPE_WORDS:
            self.i += len(w)
            return self.value(_TYPE_WORDS[w])
        if c == "[":
            return self.array(want)
        if c == "(":
            return self.tuple(want)
        if c == "{":
            return self.dict(want)
        if c == "<":
            self.i += 1
            inner = self.value(None)
            self.expect(">")
            return "v", inner
        if c in "'\"":
            return self.string(want or "s")
        if w in ("true", "false"):
            self.i += len(w)
            if want not in (None, "b"):
                raise ValueError(f"{w} is not of type {want}")
            return "b", w == "true"
        if w:
            self.i += len(w)
            return self.number(w, want)
        raise ValueError(f"unexpected {self.s[self.i:]!r}")

    def number(self, w: str, want: str | None) -> tuple[str, object]:
        is_float = any(ch in w for ch in ".eE") and not w.lower().startswith(("0x", "-0x"))
        if want == "d" or (want is None and is_float) or w in ("inf", "-inf", "nan"):
            return "d", float(w)
        sig = want or "i"
        if sig not in _RANGES:
            raise ValueError(f"{w} is not of type {sig}")
        n = int(w, 0)
        lo, hi = _RANGES[sig]
        if not lo <= n <= hi:
            raise ValueError(f"{w} is out of range for type {sig}")
        return sig, n

    def string(self, sig: str) -> tuple[str, object]:
        if sig not in "sog" or len(sig) != 1:
            raise ValueError(f"a string is not of type {sig}")
        q = self.s[self.i]
        self.i += 1
        out = []
        esc = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}
        while True:
            if self.i >= len(self.s):
                raise ValueError("unterminated string")
            ch = self.s[self.i]
            self.i += 1
            if ch == q:
                return sig, "".join(out)
            if ch == "\\" and self.i < len(self.s):
                nxt = self.s[self.i]
                self.i += 1
                out.append(esc.get(nxt, nxt))
            else:
                out.append(ch)

    def array(self, want: str | None) -> tuple[str, object]:
        if want is not None and not want.startswith("a"):
            raise ValueError(f"an array is not of type {want}")
        self.expect("[")
        elem = want[1:] if want else None
        items = []
        while self.peek() != "]":
            if items:
                self.expect(",")
            sig, v = self.value(elem)
            if elem is None:
                elem = sig
            elif sig != elem:
                raise ValueError(f"array elements of types {elem} and {sig}")
            items.append(v)
        self.i += 1
        if elem is None:
            raise ValueError("the type of an empty array must be given (e.g. @as [])")
        return "a" + elem, items

    def tuple(self, want: str | None) -> tuple[str, object]:
        fields = split_signature(want[1:-1]) if want and want.startswith("(") else None
        if want is not None and fields is None:
            raise ValueError(f"a tuple is not of type {want}")
        self.expect("(")
        sigs, vals = [], []
        while self.peek() != ")":
            if vals:
                self.expect(",")
                if self.peek() == ")":
                    break
            sig, v = self.value(fields[len(vals)] if fields and len(vals) < len(fields) else None)
            sigs.append(sig)
            vals.append(v)
        self.i += 1
        sig = "(" + "".join(sigs) + ")"
        if not vals or (want is not None and sig != want):
            raise ValueError(f"tuple {sig} does not match {want or 'a non-empty tuple'}")
        return sig, tuple(vals)

    def dict(self, want: str | None) -> tuple[str, object]:
        kt = vt = None
        if want is not None:
            if not want.startswith("a{"):
                raise ValueError(f"a dictionary is not of type {want}")
            kt, vt = split_signature(want[2:-1])
        self.expect("{")
        out = {}
        while self.peek() != "}":
            if out:
                self.expect(",")
            ks, k = self.value(kt)
            self.expect(":")
            vs, v = self.value(vt)
            kt, vt = kt or ks, vt or vs
            if (ks, vs) != (kt, vt):
                raise ValueError("dictionary entries of different types")
            out[k] = v
        self.i += 1
        if kt is None:
            raise ValueError("the type of an empty dictionary must be given (e.g. @a{sv} {})")
        return "a{" + kt + vt + "}", out
