"""Facts that vary by architecture, in one table: the numbers of the syscalls runp makes by
number (and of those its tests make or watch: number()), the terminal ioctls it issues, the
rlimit resource numbers, each architecture's audit id (what a seccomp filter sees) and byte order.

The running architecture is chosen once, at import, from os.uname().machine, the interpreter's
word size and byte order (a 32-bit userland on a 64-bit kernel, e.g. armhf on an arm64
Raspberry Pi kernel, makes the 32-bit calls): some dict lookups; importing the module costs
about 75 us (median here, most of it the import machinery), on create and run only.
On an architecture not in the table, looking up a number raises one line naming it, never a
wrong syscall: commands that make none of these calls (state, list, spec) still work.

The numbers are the kernel's (arch/*/entry/syscalls/*.tbl, include/uapi/asm-generic/unistd.h,
the uapi asm/ioctls.h); tests/test_arch.py checks every syscall number against libseccomp for
every architecture, and all of them against the kernel headers where Debian's
linux-libc-dev-*-cross packages are installed. Signal numbers (mips has its own) come from the
C library through _signal, not from here.
"""
from __future__ import annotations

import os
import sys

from ..errors import RuntimeFailure

# Debian's architectures (bookworm and trixie) with a libseccomp: the name used here, the
# libseccomp / OCI name, the kernel's AUDIT_ARCH_* value, the syscall ABI's byte order.
ARCHES = {
    "x86_64": ("SCMP_ARCH_X86_64", 0xC000003E, "little"),     # amd64
    "i386": ("SCMP_ARCH_X86", 0x40000003, "little"),          # i386
    "aarch64": ("SCMP_ARCH_AARCH64", 0xC00000B7, "little"),   # arm64
    "arm": ("SCMP_ARCH_ARM", 0x40000028, "little"),           # armhf, armel (EABI)
    "ppc64le": ("SCMP_ARCH_PPC64LE", 0xC0000015, "little"),   # ppc64el
    "s390x": ("SCMP_ARCH_S390X", 0x80000016, "big"),          # s390x
    "riscv64": ("SCMP_ARCH_RISCV64", 0xC00000F3, "little"),   # riscv64
    "mips64el": ("SCMP_ARCH_MIPSEL64", 0xC0000008, "little"),  # mips64el (n64 ABI)
    "mipsel": ("SCMP_ARCH_MIPSEL", 0x40000008, "little"),     # mipsel (o32 ABI)
}
_COLUMNS = tuple(ARCHES)

# The syscalls runp makes through syscall(2) (no glibc 2.36 wrapper, or one that would need
# the ctypes package on the hot path), one column per architecture in ARCHES' order.
SYSCALLS = {
    #                x86_64 i386 aarch64 arm ppc64le s390x riscv64 mips64el mipsel
    "capset":        (126, 185, 91, 185, 184, 185, 91, 5124, 4205),
    "pivot_root":    (155, 217, 41, 218, 203, 217, 41, 5151, 4216),
    "keyctl":        (250, 288, 219, 311, 271, 280, 219, 5241, 4282),
    "ioprio_set":    (251, 289, 30, 314, 273, 282, 30, 5273, 4314),
    "sched_setattr": (314, 351, 274, 380, 355, 345, 274, 5309, 4349),
    "seccomp":       (317, 354, 277, 383, 358, 348, 277, 5312, 4352),
    "bpf":           (321, 357, 280, 386, 361, 351, 280, 5315, 4355),
    "set_mempolicy": (238, 276, 237, 321, 261, 270, 237, 5229, 4270),
    # since Linux 5.2 the new calls have one number everywhere (+4000 o32, +5000 n64)
    "open_tree":     (428, 428, 428, 428, 428, 428, 428, 5428, 4428),
    "move_mount":    (429, 429, 429, 429, 429, 429, 429, 5429, 4429),
    "fsopen":        (430, 430, 430, 430, 430, 430, 430, 5430, 4430),
    "fsconfig":      (431, 431, 431, 431, 431, 431, 431, 5431, 4431),
    "fsmount":       (432, 432, 432, 432, 432, 432, 432, 5432, 4432),
    "close_range":   (436, 436, 436, 436, 436, 436, 436, 5436, 4436),
    "openat2":       (437, 437, 437, 437, 437, 437, 437, 5437, 4437),
    "faccessat2":    (439, 439, 439, 439, 439, 439, 439, 5439, 4439),
    "mount_setattr": (442, 442, 442, 442, 442, 442, 442, 5442, 4442),
}

# The syscalls runp's tests make or watch by number (a seccomp agent sees numbers, listmount has
# no glibc 2.36 wrapper), in the same columns, so that the tests are right on every architecture
# and checked with the rest. None: the architecture has no such call (the asm-generic ones,
# aarch64 and riscv64, have mkdirat only). Not in NR: runp itself never makes them.
TEST_SYSCALLS = {
    #                x86_64 i386 aarch64 arm ppc64le s390x riscv64 mips64el mipsel
    "getpid":        (39, 20, 172, 20, 20, 20, 172, 5038, 4020),
    "execve":        (59, 11, 221, 11, 11, 11, 221, 5057, 4011),
    "execveat":      (322, 358, 281, 387, 362, 354, 281, 5316, 4356),
    "mkdir":         (83, 39, None, 39, 39, 39, None, 5081, 4039),
    "mkdirat":       (258, 296, 34, 323, 287, 289, 34, 5248, 4289),
    "listmount":     (458, 458, 458, 458, 458, 458, 458, 5458, 4458),   # Linux 6.8
}

# Terminal ioctls: _IOC() puts the direction in 2 bits at bit 30 with READ=2 WRITE=1
# (asm-generic), in 3 bits at bit 29 with READ=2 WRITE=4 NONE=1 on powerpc and mips, and those
# two number the window-size requests differently too.
_GENERIC_IOCTLS = {"TIOCGPTN": 0x80045430, "TIOCSPTLCK": 0x40045431, "TIOCGPTPEER": 0x5441,
                   "TIOCGWINSZ": 0x5413, "TIOCSWINSZ": 0x5414}
_PPC_MIPS_IOCTLS = {"TIOCGPTN": 0x40045430, "TIOCSPTLCK": 0x80045431, "TIOCGPTPEER": 0x20005441,
                    "TIOCGWINSZ": 0x40087468, "TIOCSWINSZ": 0x80087467}
IOCTLS = {name: _PPC_MIPS_IOCTLS if name.startswith(("ppc", "mips")) else _GENERIC_IOCTLS
          for name in ARCHES}

# (os.uname().machine, pointer bits, byte order) -> architecture. uname names the kernel's;
# a 32-bit interpreter on a 64-bit kernel uses the 32-bit ABI (compat syscalls).
# RLIMIT_* resource numbers (include/uapi/asm-generic/resource.h); mips numbers five of them
# its own way (arch/mips/include/uapi/asm/resource.h). Names are config.md's.
_GENERIC_RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
_MIPS_RLIMITS = {**_GENERIC_RLIMITS, "RLIMIT_NOFILE": 5, "RLIMIT_AS": 6, "RLIMIT_RSS": 7,
                 "RLIMIT_NPROC": 8, "RLIMIT_MEMLOCK": 9}
RLIMITS_OF = {name: _MIPS_RLIMITS if name.startswith("mips") else _GENERIC_RLIMITS
              for name in ARCHES}

_MACHINES = {
    ("x86_64", 64, "little"): "x86_64", ("x86_64", 32, "little"): "i386",
    ("i386", 32, "little"): "i386", ("i486", 32, "little"): "i386",
    ("i586", 32, "little"): "i386", ("i686", 32, "little"): "i386",
    ("aarch64", 64, "little"): "aarch64", ("aarch64", 32, "little"): "arm",
    ("armv8l", 32, "little"): "arm", ("armv7l", 32, "little"): "arm",
    ("armv6l", 32, "little"): "arm", ("armv5tel", 32, "little"): "arm",
    ("armv5tejl", 32, "little"): "arm",
    ("ppc64le", 64, "little"): "ppc64le",
    ("s390x", 64, "big"): "s390x",
    ("riscv64", 64, "little"): "riscv64",
    ("mips64", 64, "little"): "mips64el", ("mips64", 32, "little"): "mipsel",
    ("mips", 32, "little"): "mipsel",
}


def detect(machine: str, bits: int, byteorder: str, multiarch: str = "") -> str | None:
    """The architecture of a process: None if it is not in the table. x32 and mips n32 (a
    64-bit kernel's 32-bit-pointer ABIs, told apart only by the interpreter's platform
    triplet) have numberings of their own that runp does not carry."""
    if multiarch.endswith(("x32", "abin32")):
        return None
    return _MACHINES.get((machine, bits, byteorder))


MACHINE = os.uname().machine
DESCRIPTION = f"{MACHINE} ({64 if sys.maxsize > 2**32 else 32}-bit, {sys.byteorder}-endian)"
NAME = detect(MACHINE, 64 if sys.maxsize > 2**32 else 32, sys.byteorder,
              getattr(sys.implementation, "_multiarch", ""))
if NAME is not None:
    _col = _COLUMNS.index(NAME)
    NR = {call: numbers[_col] for call, numbers in SYSCALLS.items()}
    IOCTL = IOCTLS[NAME]
    RLIMITS = RLIMITS_OF[NAME]
    AUDIT_ARCH = ARCHES[NAME][1]
else:
    class _Unknown(dict):
        """NR / IOCTL on an architecture not in the table: every lookup fails with one line."""

        def __missing__(self, key: str):
            raise RuntimeFailure(
                f"unsupported architecture {DESCRIPTION}: no number for {key} "
                f"(runp knows {', '.join(ARCHES)})")

    NR = _Unknown()
    IOCTL = _Unknown()
    RLIMITS = _Unknown()
    AUDIT_ARCH = 0
BIG_ENDIAN = sys.byteorder == "big"


def number(call: str, name: str | None = None) -> int | None:
    """The number of `call` (from either table) on architecture `name`, this machine's by
    default; None where that architecture has no such call."""
    if name is None:
        if NAME is None:
            raise RuntimeFailure(f"unsupported architecture {DESCRIPTION}: no number for {call}")
        name = NAME
    row = SYSCALLS[call] if call in SYSCALLS else TEST_SYSCALLS[call]
    return row[_COLUMNS.index(name)]


# AUDIT_ARCH_* (linux/audit.h) of every architecture a seccomp profile may name: libseccomp's
# SCMP_ARCH_* tokens are these values, except X32, whose calls the kernel reports as x86_64
# calls with X32_SYSCALL_BIT set in the number.
AUDIT = {
    "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X86_64": 0xC000003E,
    "SCMP_ARCH_X32": 0xC000003E, "SCMP_ARCH_ARM": 0x40000028,
    "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_MIPS": 0x00000008,
    "SCMP_ARCH_MIPS64": 0x80000008, "SCMP_ARCH_MIPS64N32": 0xA0000008,
    "SCMP_ARCH_MIPSEL": 0x40000008, "SCMP_ARCH_MIPSEL64": 0xC0000008,
    "SCMP_ARCH_MIPSEL64N32": 0xE0000008, "SCMP_ARCH_PPC": 0x00000014,
    "SCMP_ARCH_PPC64": 0x80000015, "SCMP_ARCH_PPC64LE": 0xC0000015,
    "SCMP_ARCH_S390": 0x00000016, "SCMP_ARCH_S390X": 0x80000016,
    "SCMP_ARCH_PARISC": 0x0000000F, "SCMP_ARCH_PARISC64": 0x8000000F,
    "SCMP_ARCH_RISCV64": 0xC00000F3, "SCMP_ARCH_LOONGARCH64": 0xC0000102,
    "SCMP_ARCH_M68K": 0x00000004, "SCMP_ARCH_SH": 0x4000002A, "SCMP_ARCH_SHEB": 0x0000002A,
}
X32_SYSCALL_BIT = 0x40000000
