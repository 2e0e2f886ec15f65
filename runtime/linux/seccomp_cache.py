"""Compiled seccomp filters, kept below the state root and found again by their profile.

libseccomp takes 16 ms here to compile podman's default profile (434 syscall names, three
architectures): more than a third of a whole `runc create` (36 ms on the same bundle), paid
again by every create and exec, although an engine gives the same profile to every container
it makes. A hit reads one file of about 11 KiB instead, and the init never imports libseccomp.

Entries live in <root>/@cache/ ('@' is never part of a container id, state.validate_id, so
`list`, `create` and `delete` never meet the directory). An entry's name is the SHA-256 of
what its program depends on: the profile as parsed, the file of the code that compiles it
(linux/seccomp.py: device, inode, size, mtime), the machine and the kernel release
(libseccomp probes the kernel's seccomp features). Inside, a header records the libseccomp library and Python binding the program was compiled
with (device, inode, size, mtime): an upgrade of either compiles afresh. The directory is
root's own (0700), entries are written atomically and read without following links; a
missing, stale or damaged entry is compiled again and replaced, never an error. At most
MAX_ENTRIES are kept, the oldest dropped first.
"""
from __future__ import annotations

import os

from ..state import CACHE_DIR, write_atomic
from .seccomp import Program, build, enabled

MAX_ENTRIES = 32
_MAGIC = b"runp-seccomp 1\n"
_MAX_BPF = 4096 * 8  # BPF_MAXINSNS instructions of 8 bytes: the kernel takes no more


def compiled(cfg: dict | None, root: str, path: str = "linux.seccomp") -> Program | None:
    """The program for linux.seccomp `cfg`: from the cache below `root`, or compiled (and
    validated: seccomp.build) and stored there. None when the config has no profile."""
    if cfg is None or not enabled(cfg):
        return None
    directory = os.path.join(root, CACHE_DIR)
    entry = os.path.join(directory, _key(cfg))
    prog = _load(entry)
    if prog is None:
        prog = build(cfg, path)
        if prog is not None:
            _store(directory, entry, prog)
    return prog


def _key(cfg: dict) -> str:
    import _sha256  # the C module alone: hashlib would load OpenSSL (2 ms)

    from . import seccomp
    u = os.uname()
    # repr of the parsed JSON: the same config text gives the same key (another key order
    # only costs one more compile)
    material = f"{_identity(seccomp.__file__)}\0{u.machine}\0{u.release}\0{cfg!r}"
    return _sha256.sha256(material.encode()).hexdigest()


def _libraries() -> list[str]:
    """The files the compiled program depends on besides the profile: the Python binding and
    the libseccomp it loaded (build() imported both)."""
    import seccomp as scmp
    found = [scmp.__file__]
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
        for line in f:
            name = line.rstrip("\n").rpartition(" ")[2]
            if "/libseccomp.so" in name and name not in found:
                found.append(name)
                break
    return found


def _identity(name: str) -> str:
    st = os.stat(name)
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns}"


def _load(entry: str) -> Program | None:
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, len(_MAGIC) + 4096 + _MAX_BPF + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not data.startswith(_MAGIC):
        return None
    header, sep, bpf = data[len(_MAGIC):].partition(b"\n\n")
    if not sep or not bpf or len(bpf) % 8 or len(bpf) > _MAX_BPF:
        return None
    fields: dict[bytes, int] = {}
    try:
        for line in header.split(b"\n"):
            word, _, rest = line.partition(b" ")
            if word == b"lib":
                name, _, ident = rest.partition(b" ")
                if _identity(os.fsdecode(name)).encode() != ident:
                    return None  # libseccomp or its binding changed since
            else:
                fields[word] = int(rest)
        return Program(bpf, fields[b"flags"], bool(fields[b"notify"]), fields[b"nr"])
    except (OSError, ValueError, KeyError):
        return None


def _store(directory: str, entry: str, prog: Program) -> None:
    """Best effort: a state root that cannot take the entry (read-only, full) only means the
    next create compiles again."""
    try:
        libs = b"".join(b"lib %s %s\n" % (os.fsencode(n), _identity(n).encode())
                        for n in _libraries())
        header = b"%sflags %d\nnotify %d\nnr %d\n" % (libs, prog.flags, prog.notify, prog.nr)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_atomic(entry, _MAGIC + header + b"\n" + prog.bpf, mode=0o600)
        _prune(directory)
    except (OSError, RuntimeError):
        pass


def _prune(directory: str) -> None:
    with os.scandir(directory) as it:
        entries = [(e.stat(follow_symlinks=False).st_mtime_ns, e.path) for e in it]
    entries.sort()
    for _, name in entries[:max(0, len(entries) - MAX_ENTRIES)]:
        try:
            os.unlink(name)
        except OSError:
            pass
