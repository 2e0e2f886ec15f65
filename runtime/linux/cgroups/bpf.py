"""The cgroup v2 device controller: a BPF_PROG_TYPE_CGROUP_DEVICE program made from the
rules (devices.py), loaded and attached to the container's cgroup with bpf(2).

bpf(2) goes through runtime.linux.libc (the ctypes package would cost 2 ms on every create on
a cgroup v2 host): the attributes are packed with struct, into buffers whose addresses the
kernel is given; it writes back into the query buffers.
"""
from __future__ import annotations

import os
import struct

from ...errors import RuntimeFailure
from ..arch import BIG_ENDIAN, NR
from ..libc import address, buffer, get_errno, syscall
from .devices import ALL, M, R, W, Emulator, Rule, check_rules  # noqa: F401

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

# struct bpf_insn is native-endian, and its dst_reg:4/src_reg:4 bitfields fill the byte from the
# least significant bit on little-endian machines, from the most significant one on big-endian.
_INSN = struct.Struct(">BBhi" if BIG_ENDIAN else "<BBhi")

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
    out = bytearray()
    for i, (code, dst, src, off, imm) in enumerate(insns):
        if isinstance(off, tuple):
            off = starts[off[1] + 1] - (i + 1)
        if imm > 0x7FFFFFFF:
            imm -= 1 << 32
        regs = (dst << 4) | src if BIG_ENDIAN else (src << 4) | dst
        out += _INSN.pack(code, regs, off, imm)
    return bytes(out)


class _Bpf:
    """bpf(2) for device programs. Attributes are union bpf_attr members, packed."""

    def __init__(self) -> None:
        self.nr = NR["bpf"]

    def call(self, cmd: int, attr) -> int:
        """attr: bytes, or a buffer() the kernel may write back into."""
        size = len(attr) if isinstance(attr, bytes) else len(attr.raw)
        ret = syscall(self.nr, cmd, attr, size)
        if ret < 0:
            err = get_errno()
            raise OSError(err, os.strerror(err))
        return ret

    def load(self, prog: bytes) -> int:
        insns = buffer(prog)
        license = buffer(b"Apache\0")
        log = buffer(65536)

        def attempt(log_level: int) -> int:
            # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version,
            # prog_flags, prog_name[16], prog_ifindex, expected_attach_type
            a = struct.pack("IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(prog) // 8,
                            address(insns), address(license), log_level,
                            len(log.raw) if log_level else 0, address(log) if log_level else 0,
                            0, 0, b"runp_devices", 0, 0)
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
                    text = log.raw.split(b"\0", 1)[0].decode(errors="replace")
                    msg = text.strip().splitlines()
                    raise OSError(e2.errno, f"{e2.strerror}: {msg[-1] if msg else ''}") from None
            raise

    # query: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt, pad,
    # prog_attach_flags
    _QUERY = "IIIIQIIQ"

    def query(self, cgfd: int) -> list[int]:
        size = 64
        for _ in range(10):
            ids = buffer(4 * size)
            a = buffer(struct.pack(self._QUERY, cgfd, BPF_CGROUP_DEVICE, 0, 0, address(ids),
                                   size, 0, 0))
            try:
                self.call(BPF_PROG_QUERY, a)
            except OSError as e:
                if e.errno == 28:    # ENOSPC: prog_cnt now holds the real count
                    size = struct.unpack(self._QUERY, a.raw)[5]
                    continue
                raise
            cnt = struct.unpack(self._QUERY, a.raw)[5]
            return list(struct.unpack(f"{cnt}I", ids.raw[:4 * cnt]))
        raise OSError(28, "too many device programs attached")

    def get_fd(self, prog_id: int) -> int:
        return self.call(BPF_PROG_GET_FD_BY_ID, struct.pack("III", prog_id, 0, 0))

    @staticmethod
    def _attach_attr(cgfd: int, progfd: int, flags: int, replace_fd: int = 0) -> bytes:
        # target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd, padding
        return struct.pack("IIIII28x", cgfd, progfd, BPF_CGROUP_DEVICE, flags, replace_fd)

    def attach(self, cgfd: int, progfd: int, replace_fd: int = -1) -> None:
        flags = BPF_F_ALLOW_MULTI
        if replace_fd >= 0:
            flags |= BPF_F_REPLACE
        self.call(BPF_PROG_ATTACH, self._attach_attr(cgfd, progfd, flags, max(replace_fd, 0)))

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
