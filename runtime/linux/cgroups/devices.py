"""Device access rules, and the v1 devices controller.

Rules are applied the way cgroup v1 interprets them (a deny-all/allow-all "a" rule resets the
list, later rules add or remove exceptions).  An emulator of those semantics (after runc's)
checks a rule list, computes the minimal v1 transition on update, and gives the clean rule set
that the v2 BPF_PROG_TYPE_CGROUP_DEVICE program is generated from (runtime.linux.cgroups.bpf).
"""
from __future__ import annotations

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
