"""Device access rules: the v1 devices controller and the v2 eBPF device program.

Rules are applied the way cgroup v1 interprets them (a deny-all/allow-all "a" rule resets the
list, later rules add or remove exceptions).  An emulator of those semantics (after runc's)
checks a rule list, computes the minimal v1 transition on update, and gives the clean rule set
that the v2 BPF_PROG_TYPE_CGROUP_DEVICE program is generated from.
"""
from __future__ import annotations

import os

from ...errors import ConfigError, RuntimeFailure
from . import common

R, W, M = 1, 2, 4
ALL = R | W | M
WILDCARD = -1


class Rule:
    __slots__ = ("type", "major", "minor", "access", "allow")

    def __init__(self, type: str, major: int, minor: int, access: int, allow: bool) -> None:
        self.type = type          # "a", "b" or "c"
        self.major = major        # -1 is "*"
        self.minor = minor
        self.access = access      # R|W|M bits
        self.allow = allow

    def cgroup_string(self) -> str:
        if self.type == "a":
            return "a *:* rwm"
        maj = "*" if self.major < 0 else str(self.major)
        mnr = "*" if self.minor < 0 else str(self.minor)
        return f"{self.type} {maj}:{mnr} {access_string(self.access)}"

    def __repr__(self) -> str:
        return f"Rule({'allow' if self.allow else 'deny'} {self.cgroup_string()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and (self.type, self.major, self.minor, self.access,
                                             self.allow) == (other.type, other.major, other.minor,
                                                             other.access, other.allow)


def access_string(bits: int) -> str:
    return ("r" if bits & R else "") + ("w" if bits & W else "") + ("m" if bits & M else "")


def parse_access(s: str) -> int | None:
    bits = 0
    for ch in s:
        if ch == "r":
            bits |= R
        elif ch == "w":
            bits |= W
        elif ch == "m":
            bits |= M
        else:
            return None
    return bits


# runc's libcontainer/specconv AllowedDevices, plus /dev/console (c 5:1). Appended after the
# config's rules, so a config with only a deny-all rule (podman) still gets a working /dev.
DEFAULT_RULES = (
    Rule("c", WILDCARD, WILDCARD, M, True),   # mknod of any char device
    Rule("b", WILDCARD, WILDCARD, M, True),   # mknod of any block device
    Rule("c", 1, 3, ALL, True),               # /dev/null
    Rule("c", 1, 8, ALL, True),               # /dev/random
    Rule("c", 1, 7, ALL, True),               # /dev/full
    Rule("c", 5, 0, ALL, True),               # /dev/tty
    Rule("c", 1, 5, ALL, True),               # /dev/zero
    Rule("c", 1, 9, ALL, True),               # /dev/urandom
    Rule("c", 136, WILDCARD, ALL, True),      # /dev/pts/*
    Rule("c", 5, 2, ALL, True),               # /dev/ptmx
    Rule("c", 5, 1, ALL, True),               # /dev/console
    Rule("c", 10, 200, ALL, True),            # /dev/net/tun
)


def rules_from_config(devices: list | None, field: str) -> list[Rule]:
    """linux.resources.devices as Rules (missing type is "a", missing major/minor "*",
    missing access "rwm"). Errors name the entry."""
    out: list[Rule] = []
    for i, d in enumerate(devices or ()):
        f = f"{field}[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f, "must be an object")
        allow = d.get("allow")
        if not isinstance(allow, bool):
            raise ConfigError(f"{f}.allow", "is required and must be a boolean")
        typ = d.get("type") or "a"
        if typ not in ("a", "b", "c"):
            raise ConfigError(f"{f}.type", f"must be \"a\", \"b\" or \"c\", not {typ!r}")
        nums = []
        for k in ("major", "minor"):
            v = d.get(k)
            if v is None:
                nums.append(WILDCARD)
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{f}.{k}", "must be an integer")
            if v < 0:
                v = WILDCARD
            elif v > 0xFFFFFFFF:
                raise ConfigError(f"{f}.{k}", f"{v} is out of range")
            nums.append(v)
        acc = d.get("access")
        if acc is None or acc == "":
            bits = ALL
        elif not isinstance(acc, str) or (bits := parse_access(acc)) is None:
            raise ConfigError(f"{f}.access", f"must be a combination of \"r\", \"w\" and \"m\", "
                                             f"not {acc!r}")
        if typ == "a":
            nums = [WILDCARD, WILDCARD]
        out.append(Rule(typ, nums[0], nums[1], bits, allow))
    return out


def with_defaults(rules: list[Rule]) -> list[Rule]:
    return list(rules) + list(DEFAULT_RULES)


# --- emulator -----------------------------------------------------------------------------------

class Emulator:
    """What a v1 devices cgroup holds: a default (allow or deny) and exceptions to it."""

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.rules: dict[tuple[str, int, int], int] = {}

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Emulator) and self.default_allow == other.default_allow
                and self.rules == other.rules)

    def _add(self, key: tuple[str, int, int], bits: int) -> None:
        self.rules[key] = self.rules.get(key, 0) | bits

    def _remove(self, key: tuple[str, int, int], bits: int) -> None:
        # cgroup v1 silently ignores removing part of a wildcard exception; refuse instead, as
        # runc does, so that a deny rule never looks effective when it is not.
        t, maj, mnr = key
        for partial in ((t, WILDCARD, mnr), (t, maj, WILDCARD), (t, WILDCARD, WILDCARD)):
            if partial == key:
                continue
            if self.rules.get(partial, 0) & bits:
                p = Rule(partial[0], partial[1], partial[2], self.rules[partial], True)
                q = Rule(t, maj, mnr, bits, True)
                raise ValueError(f"rule \"{q.cgroup_string()}\" cannot punch a hole in the "
                                 f"wildcard rule \"{p.cgroup_string()}\" (cgroup v1 semantics)")
        left = self.rules.get(key, 0) & ~bits
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)

    def apply(self, rule: Rule) -> None:
        if rule.type == "a":
            self.default_allow = rule.allow
            self.rules = {}
            return
        key = (rule.type, rule.major, rule.minor)
        if rule.allow == self.default_allow:
            self._remove(key, rule.access)   # allow in allow-mode / deny in deny-mode
        else:
            self._add(key, rule.access)

    @classmethod
    def from_rules(cls, rules: list[Rule]) -> "Emulator":
        emu = cls(default_allow=False)   # like runc: a white-list unless told otherwise
        for r in rules:
            emu.apply(r)
        return emu

    @classmethod
    def from_list(cls, text: str) -> "Emulator":
        """The state of a v1 cgroup from its devices.list (which only lists allowed devices;
        an "a *:* rwm" line means black-list mode, whose deny rules cannot be seen)."""
        emu = cls(default_allow=False)
        for line in text.splitlines():
            f = line.replace(":", " ").split()
            if len(f) != 4:
                continue
            if f[0] == "a":
                emu = cls(default_allow=True)
                continue
            maj = WILDCARD if f[1] == "*" else int(f[1])
            mnr = WILDCARD if f[2] == "*" else int(f[2])
            bits = parse_access(f[3]) or 0
            if not emu.default_allow:
                emu._add((f[0], maj, mnr), bits)
        return emu

    def _ordered(self) -> list[tuple[tuple[str, int, int], int]]:
        return sorted(self.rules.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))

    def transition(self, target: "Emulator") -> list[Rule]:
        """The fewest v1 writes that turn this state into `target`."""
        out: list[Rule] = []
        old = self.rules
        if self.default_allow or self.default_allow != target.default_allow:
            out.append(Rule("a", WILDCARD, WILDCARD, ALL, target.default_allow))
            old = {}
        for (t, maj, mnr), bits in sorted(old.items(), key=lambda kv: (kv[0][1], kv[0][2],
                                                                        kv[0][0])):
            dropped = bits & ~target.rules.get((t, maj, mnr), 0)
            if dropped:
                out.append(Rule(t, maj, mnr, dropped, target.default_allow))
        for (t, maj, mnr), bits in target._ordered():
            gained = bits & ~old.get((t, maj, mnr), 0)
            if gained:
                out.append(Rule(t, maj, mnr, gained, not target.default_allow))
        return out

    def clean_rules(self) -> list[Rule]:
        """The minimal rules that build this state from a deny-all cgroup."""
        return Emulator(default_allow=False).transition(self)


def check_rules(rules: list[Rule], n_config: int, field: str) -> Emulator:
    """Emulate the rules, naming the offending config entry on error."""
    emu = Emulator(default_allow=False)
    for i, r in enumerate(rules):
        try:
            emu.apply(r)
        except ValueError as e:
            where = f"{field}[{i}]" if i < n_config else field
            raise ConfigError(where, str(e)) from None
    return emu


# --- cgroup v1 ----------------------------------------------------------------------------------

def set_v1(dirpath: str, rules: list[Rule], n_config: int, field: str) -> None:
    """Write the rules into a v1 devices cgroup.

    A fresh (allow-all) cgroup gets a deny-all rule and then every rule in the given order, so
    devices.list shows the config's order; a cgroup already in allow-list mode (update) gets
    only the transition, so running processes never see a spurious deny.
    """
    target = check_rules(rules, n_config, field)
    try:
        current = Emulator.from_list(common.read(dirpath, "devices.list"))
    except FileNotFoundError:
        raise common.not_supported(field, f"{dirpath}/devices.list does not exist") from None
    if current == target and not target.default_allow:
        return
    if current.default_allow:
        # The kernel applies each write with the semantics the emulator checked above.
        writes = [Rule("a", WILDCARD, WILDCARD, ALL, False)] + list(rules)
    else:
        writes = current.transition(target)
    for r in writes:
        name = "devices.allow" if r.allow else "devices.deny"
        common.write_field(field, dirpath, name, r.cgroup_string())
    after = Emulator.from_list(common.read(dirpath, "devices.list"))
    if target.default_allow != after.default_allow or (not target.default_allow
                                                       and after != target):
        raise RuntimeFailure(f"{field}: the devices cgroup {dirpath} does not match the "
                             f"requested rules after writing them")


# --- cgroup v2: eBPF ----------------------------------------------------------------------------

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
BPF_F_REPLACE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "ppc64": 361,
            "s390x": 351, "armv7l": 386, "armv6l": 386, "i686": 357, "i386": 357,
            "loongarch64": 280, "mips64": 5315}

# instruction opcodes (struct bpf_insn.code)
_LDX_MEM_W = 0x61      # BPF_LDX | BPF_MEM | BPF_W
_ALU32_AND_K = 0x54    # BPF_ALU | BPF_AND | BPF_K
_ALU32_RSH_K = 0x74    # BPF_ALU | BPF_RSH | BPF_K
_ALU32_MOV_K = 0xB4    # BPF_ALU | BPF_MOV | BPF_K
_ALU32_MOV_X = 0xBC    # BPF_ALU | BPF_MOV | BPF_X
_JNE_K = 0x55          # BPF_JMP | BPF_JNE | BPF_K
_JNE_X = 0x5D          # BPF_JMP | BPF_JNE | BPF_X
_EXIT = 0x95           # BPF_JMP | BPF_EXIT


def build_program(rules: list[Rule]) -> bytes:
    """The BPF_PROG_TYPE_CGROUP_DEVICE program (raw struct bpf_insn array) for the rules.

    Same shape as runc's and crun's: load type/access/major/minor from struct
    bpf_cgroup_dev_ctx into r2..r5, one block per clean rule (first match decides), then the
    default.
    """
    emu = Emulator.from_rules(rules)
    default = 1 if emu.default_allow else 0
    # (code, dst, src, off-or-label, imm); a label is ("next", block_no)
    insns: list[list] = [
        [_LDX_MEM_W, 2, 1, 0, 0], [_ALU32_AND_K, 2, 0, 0, 0xFFFF],
        [_LDX_MEM_W, 3, 1, 0, 0], [_ALU32_RSH_K, 3, 0, 0, 16],
        [_LDX_MEM_W, 4, 1, 4, 0],
        [_LDX_MEM_W, 5, 1, 8, 0],
    ]
    starts: list[int] = []
    block = 0
    for r in emu.clean_rules():
        if r.type == "a":
            continue     # the leading reset; the default above encodes it
        starts.append(len(insns))
        nxt = ("next", block)
        btype = BPF_DEVCG_DEV_CHAR if r.type == "c" else BPF_DEVCG_DEV_BLOCK
        insns.append([_JNE_K, 2, 0, nxt, btype])
        acc = ((BPF_DEVCG_ACC_READ if r.access & R else 0)
               | (BPF_DEVCG_ACC_WRITE if r.access & W else 0)
               | (BPF_DEVCG_ACC_MKNOD if r.access & M else 0))
        if r.access != ALL:
            insns.append([_ALU32_MOV_X, 1, 3, 0, 0])
            insns.append([_ALU32_AND_K, 1, 0, 0, acc])
            insns.append([_JNE_X, 1, 3, nxt, 0])
        if r.major >= 0:
            insns.append([_JNE_K, 4, 0, nxt, r.major])
        if r.minor >= 0:
            insns.append([_JNE_K, 5, 0, nxt, r.minor])
        insns.append([_ALU32_MOV_K, 0, 0, 0, 1 if r.allow else 0])
        insns.append([_EXIT, 0, 0, 0, 0])
        block += 1
    starts.append(len(insns))
    insns.append([_ALU32_MOV_K, 0, 0, 0, default])
    insns.append([_EXIT, 0, 0, 0, 0])
    import struct
    out = bytearray()
    for i, (code, dst, src, off, imm) in enumerate(insns):
        if isinstance(off, tuple):
            off = starts[off[1] + 1] - (i + 1)
        if imm > 0x7FFFFFFF:
            imm -= 1 << 32
        out += struct.pack("<BBhi", code, (src << 4) | dst, off, imm)
    return bytes(out)


class _Bpf:
    def __init__(self) -> None:
        import ctypes
        from ..sys import libc
        self.ctypes = ctypes
        self.libc = libc
        self.nr = _SYS_BPF.get(os.uname().machine)
        if self.nr is None:
            raise RuntimeFailure(f"bpf(2): unknown syscall number on {os.uname().machine}")

    def call(self, cmd: int, attr) -> int:
        c = self.ctypes
        ret = self.libc.syscall(c.c_long(self.nr), c.c_int(cmd), c.byref(attr),
                                c.c_uint(c.sizeof(attr)))
        if ret < 0:
            err = c.get_errno()
            raise OSError(err, os.strerror(err))
        return ret

    def load(self, prog: bytes) -> int:
        c = self.ctypes
        insns = c.create_string_buffer(prog, len(prog))
        license = c.create_string_buffer(b"Apache")
        log = c.create_string_buffer(65536)

        class Attr(c.Structure):
            _fields_ = [("prog_type", c.c_uint32), ("insn_cnt", c.c_uint32),
                        ("insns", c.c_uint64), ("license", c.c_uint64),
                        ("log_level", c.c_uint32), ("log_size", c.c_uint32),
                        ("log_buf", c.c_uint64), ("kern_version", c.c_uint32),
                        ("prog_flags", c.c_uint32), ("prog_name", c.c_char * 16),
                        ("prog_ifindex", c.c_uint32), ("expected_attach_type", c.c_uint32)]

        def attempt(log_level: int) -> int:
            a = Attr(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(prog) // 8,
                     insns=c.addressof(insns), license=c.addressof(license),
                     log_level=log_level, log_size=len(log) if log_level else 0,
                     log_buf=c.addressof(log) if log_level else 0,
                     prog_name=b"runp_devices")
            return self.call(BPF_PROG_LOAD, a)

        try:
            return attempt(0)
        except OSError as e:
            if e.errno == 1:     # EPERM: maybe RLIMIT_MEMLOCK on kernels before 5.11
                import resource
                soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
                if soft != hard:
                    try:
                        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
                        return attempt(0)
                    except OSError:
                        pass
                    finally:
                        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))
            if e.errno in (22, 13):   # EINVAL / EACCES: the verifier says why
                try:
                    return attempt(1)
                except OSError as e2:
                    msg = log.value.decode(errors="replace").strip().splitlines()
                    raise OSError(e2.errno, f"{e2.strerror}: {msg[-1] if msg else ''}") from None
            raise

    def query(self, cgfd: int) -> list[int]:
        c = self.ctypes

        class Attr(c.Structure):
            _fields_ = [("target_fd", c.c_uint32), ("attach_type", c.c_uint32),
                        ("query_flags", c.c_uint32), ("attach_flags", c.c_uint32),
                        ("prog_ids", c.c_uint64), ("prog_cnt", c.c_uint32),
                        ("pad", c.c_uint32), ("prog_attach_flags", c.c_uint64)]

        size = 64
        for _ in range(10):
            ids = (c.c_uint32 * size)()
            a = Attr(target_fd=cgfd, attach_type=BPF_CGROUP_DEVICE, prog_ids=c.addressof(ids),
                     prog_cnt=size)
            try:
                self.call(BPF_PROG_QUERY, a)
            except OSError as e:
                if e.errno == 28:    # ENOSPC: prog_cnt now holds the real count
                    size = a.prog_cnt
                    continue
                raise
            return list(ids[:a.prog_cnt])
        raise OSError(28, "too many device programs attached")

    def get_fd(self, prog_id: int) -> int:
        c = self.ctypes

        class Attr(c.Structure):
            _fields_ = [("prog_id", c.c_uint32), ("next_id", c.c_uint32),
                        ("open_flags", c.c_uint32)]

        return self.call(BPF_PROG_GET_FD_BY_ID, Attr(prog_id=prog_id))

    def _attach_attr(self, cgfd: int, progfd: int, flags: int, replace_fd: int = 0):
        c = self.ctypes

        class Attr(c.Structure):
            _fields_ = [("target_fd", c.c_uint32), ("attach_bpf_fd", c.c_uint32),
                        ("attach_type", c.c_uint32), ("attach_flags", c.c_uint32),
                        ("replace_bpf_fd", c.c_uint32), ("pad", c.c_uint32 * 7)]

        return Attr(target_fd=cgfd, attach_bpf_fd=progfd, attach_type=BPF_CGROUP_DEVICE,
                    attach_flags=flags, replace_bpf_fd=replace_fd)

    def attach(self, cgfd: int, progfd: int, replace_fd: int = -1) -> None:
        flags = BPF_F_ALLOW_MULTI
        if replace_fd >= 0:
            flags |= BPF_F_REPLACE
        self.call(BPF_PROG_ATTACH, self._attach_attr(cgfd, progfd, flags,
                                                     max(replace_fd, 0)))

    def detach(self, cgfd: int, progfd: int) -> None:
        self.call(BPF_PROG_DETACH, self._attach_attr(cgfd, progfd, 0))


def attached_programs(dirpath: str) -> list[int]:
    """Ids of the device programs attached to a v2 cgroup."""
    bpf = _Bpf()
    cgfd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return bpf.query(cgfd)
    finally:
        os.close(cgfd)


def set_v2(dirpath: str, rules: list[Rule], n_config: int, field: str) -> None:
    """Load the device program for the rules and attach it to the cgroup, replacing the one
    attached before (BPF_F_REPLACE when there is exactly one, else attach then detach)."""
    check_rules(rules, n_config, field)
    prog = build_program(rules)
    bpf = _Bpf()
    cgfd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    old_fds: list[int] = []
    progfd = -1
    try:
        try:
            for pid in bpf.query(cgfd):
                try:
                    old_fds.append(bpf.get_fd(pid))
                except OSError as e:
                    if e.errno not in (1, 13, 2):   # not ours to see (LSM), or just gone
                        raise
            progfd = bpf.load(prog)
        except OSError as e:
            if _can_skip_bpf_error(rules):
                return
            raise RuntimeFailure(f"{field}: loading the eBPF device program: {e.strerror}") \
                from None
        try:
            if len(old_fds) == 1:
                try:
                    bpf.attach(cgfd, progfd, old_fds[0])
                    return
                except OSError as e:
                    if e.errno not in (22, 2):     # no BPF_F_REPLACE (EINVAL), old one gone
                        raise
            bpf.attach(cgfd, progfd)
            for fd in old_fds:
                try:
                    bpf.detach(cgfd, fd)
                except OSError as e:
                    if e.errno != 2:
                        raise
        except OSError as e:
            raise RuntimeFailure(f"{field}: attaching the eBPF device program to {dirpath}: "
                                 f"{e.strerror}") from None
    finally:
        for fd in old_fds:
            os.close(fd)
        if progfd >= 0:
            os.close(progfd)
        os.close(cgfd)


def _can_skip_bpf_error(rules: list[Rule]) -> bool:
    """Like runc (after crun): in a user namespace, or when every rule allows everything, a
    failure to load the program loses nothing."""
    try:
        with open("/proc/self/uid_map") as f:
            if f.read().split() != ["0", "0", "4294967295"]:
                return True
    except OSError:
        pass
    return all(r.allow and r.access == ALL for r in rules)
