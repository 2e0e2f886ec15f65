"""runtime/linux/arch.py: the one table of what differs between architectures.

The syscall numbers are checked against libseccomp for every architecture (libseccomp's tables
come from the kernel's), every number and ioctl against the kernel's own uapi headers where
Debian's linux-libc-dev-*-cross packages are installed (hack/setup installs them), the native
choice against what libseccomp and termios say about this machine. test_arm64_run runs runp
and a part of this suite in an arm64 Debian root under qemu-user (hack/arm64).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import RUNP, TOP, new_id
from emulation import in_child
from runtime.linux import arch

# Debian triplet of each architecture's cross headers, and what the compiler would define
_HEADERS = {
    "x86_64": ("x86_64-linux-gnu", "asm/unistd_64.h", ["-D__x86_64__"]),
    "i386": ("i686-linux-gnu", "asm/unistd_32.h", ["-D__i386__"]),
    "aarch64": ("aarch64-linux-gnu", "asm/unistd.h", []),
    "arm": ("arm-linux-gnueabihf", "asm/unistd.h", ["-D__ARM_EABI__"]),
    "ppc64le": ("powerpc64le-linux-gnu", "asm/unistd_64.h", ["-D__powerpc64__"]),
    "s390x": ("s390x-linux-gnu", "asm/unistd_64.h", ["-D__s390x__"]),
    "riscv64": ("riscv64-linux-gnu", "asm/unistd.h", []),
    "mips64el": ("mips64el-linux-gnuabi64", "asm/unistd.h",
                 ["-D_MIPS_SIM_ABI32=1", "-D_MIPS_SIM_NABI32=2", "-D_MIPS_SIM_ABI64=3",
                  "-D_MIPS_SIM=3"]),
    "mipsel": ("mips64el-linux-gnuabi64", "asm/unistd.h",   # o32 numbers: the same uapi
               ["-D_MIPS_SIM_ABI32=1", "-D_MIPS_SIM_NABI32=2", "-D_MIPS_SIM_ABI64=3",
                "-D_MIPS_SIM=1"]),
}


# both tables: the calls runp makes and the ones its tests make or watch
ALL_SYSCALLS = {**arch.SYSCALLS, **arch.TEST_SYSCALLS}


def test_every_architecture_has_every_number():
    assert set(_HEADERS) == set(arch.ARCHES)
    assert not set(arch.SYSCALLS) & set(arch.TEST_SYSCALLS)
    for call, numbers in ALL_SYSCALLS.items():
        assert len(numbers) == len(arch.ARCHES), call
    assert all(None not in numbers for numbers in arch.SYSCALLS.values())


def test_syscall_numbers_match_libseccomp_for_every_architecture():
    """Every number is libseccomp's; None where libseccomp knows the call but not on that
    architecture (its negative pseudo-numbers). A call this libseccomp does not know at all
    (listmount: 2.5.4 predates it) is left to the unified-numbering test below."""
    scmp = pytest.importorskip("seccomp", reason="python3-seccomp (hack/setup)")
    wrong = []
    for i, (name, (scmp_name, audit, _order)) in enumerate(arch.ARCHES.items()):
        token = getattr(scmp.Arch, scmp_name[len("SCMP_ARCH_"):])
        assert token & 0xFFFFFFFF == audit, name
        for call, numbers in ALL_SYSCALLS.items():
            nr = scmp.resolve_syscall(token, call)
            if nr == -1 and call in arch.TEST_SYSCALLS:   # __NR_SCMP_ERROR: an unknown name
                continue
            if (None if nr < 0 else nr) != numbers[i]:
                wrong.append(f"{name} {call}: table {numbers[i]}, libseccomp {nr}")
    assert not wrong, wrong


def test_calls_since_linux_5_1_have_one_number_everywhere():
    """From pidfd_send_signal (424, Linux 5.1) on, a new call has the same number on every
    architecture, +5000 on mips n64 and +4000 on mips o32 (the kernel's syscall.tbl files since
    5.1): what checks the rows newer than this host's libseccomp and kernel headers."""
    mips = {"mips64el": 5000, "mipsel": 4000}
    for call, numbers in ALL_SYSCALLS.items():
        if numbers[0] >= 424:
            assert numbers == tuple(numbers[0] + mips.get(name, 0) for name in arch.ARCHES), call


def test_audit_values_match_libseccomp():
    """Every SCMP_ARCH_* this libseccomp knows has the AUDIT value of the table (X32's token
    is not an audit value: the kernel reports x32 calls as x86_64 ones)."""
    scmp = pytest.importorskip("seccomp", reason="python3-seccomp (hack/setup)")
    known = 0
    for name, audit in arch.AUDIT.items():
        token = getattr(scmp.Arch, name[len("SCMP_ARCH_"):], None)
        if token is None or name == "SCMP_ARCH_X32":
            continue
        known += 1
        assert token & 0xFFFFFFFF == audit, name
    assert known >= 15


def _cpp_values(triple: str, defines: list[str], includes: list[str],
                exprs: dict[str, str]) -> dict[str, int]:
    """C expressions evaluated as the kernel's uapi headers of one architecture define them
    (the preprocessor expands them; the few C forms _IOC() leaves are evaluated here). A macro
    the headers do not define is left out of the result."""
    src = "".join(f"#include <{h}>\n" for h in includes)
    src += "".join(f"#ifdef {e}\nv_{k} = {e};\n#endif\n" for k, e in exprs.items())
    r = subprocess.run(["gcc", "-E", "-P", "-nostdinc", f"-I/usr/{triple}/include", *defines,
                        "-"], input=src, capture_output=True, text=True, check=True)
    out = {}
    for m in re.finditer(r"^v_(\w+) = (.*);$", r.stdout, re.M):
        e = re.sub(r"'(.)'", lambda c: str(ord(c.group(1))), m.group(2))
        e = re.sub(r"sizeof\s*\(\s*struct winsize\s*\)", "8", e)
        e = re.sub(r"sizeof\s*\(\s*(unsigned int|int)\s*\)", "4", e)
        e = re.sub(r"(\d+)[UL]+\b", r"\1", e)
        assert re.fullmatch(r"[\d\sx()|<>+a-fA-F-]*", e), (m.group(1), e)
        out[m.group(1)] = eval(e)  # noqa: S307 - digits and operators only (checked above)
    return out


def _need_headers(name: str) -> str:
    triple = _HEADERS[name][0]
    if not Path(f"/usr/{triple}/include/asm/unistd.h").exists() or not shutil.which("gcc"):
        pytest.skip(f"no kernel headers for {name}: Debian's linux-libc-dev-*-cross packages "
                    f"and gcc (hack/setup)")
    return triple


@pytest.mark.parametrize("name", list(_HEADERS))
def test_table_matches_the_kernel_headers(name):
    triple = _need_headers(name)
    _, unistd, defines = _HEADERS[name]
    i = list(arch.ARCHES).index(name)
    nrs = _cpp_values(triple, defines, [unistd], {c: f"__NR_{c}" for c in ALL_SYSCALLS})
    assert nrs == {c: numbers[i] for c, numbers in ALL_SYSCALLS.items() if c in nrs}
    # a call the headers lack: this architecture has none (None in the table), or the
    # headers predate it (x86_64's lack it too: listmount, 6.8, in bookworm's 6.1 headers)
    missing = set(ALL_SYSCALLS) - set(nrs)
    older = set(ALL_SYSCALLS) - set(_cpp_values(_need_headers("x86_64"), _HEADERS["x86_64"][2],
                                                [_HEADERS["x86_64"][1]],
                                                {c: f"__NR_{c}" for c in ALL_SYSCALLS}))
    assert {c for c in missing if ALL_SYSCALLS[c][i] is not None} <= older, missing
    assert {c for c, numbers in ALL_SYSCALLS.items() if numbers[i] is None} <= missing
    ioctls = _cpp_values(triple, defines, ["asm/ioctls.h"],
                         {k: k for k in arch.IOCTLS[name]})
    assert ioctls == arch.IOCTLS[name]
    rlimits = _cpp_values(triple, defines, ["asm/resource.h"],
                          {k: k for k in arch.RLIMITS_OF[name]})
    assert rlimits == arch.RLIMITS_OF[name]


def test_rlimit_names_are_the_specs():
    from runtime.spec import RLIMIT_NAMES
    assert all(set(table) == RLIMIT_NAMES for table in arch.RLIMITS_OF.values())


def test_audit_values_match_the_kernel_header():
    if not Path("/usr/include/linux/audit.h").exists() or not shutil.which("gcc"):
        pytest.skip("no /usr/include/linux/audit.h (linux-libc-dev) or gcc")
    macro = {"SCMP_ARCH_X86": "I386", "SCMP_ARCH_X32": "X86_64", "SCMP_ARCH_SH": "SHEL",
             "SCMP_ARCH_SHEB": "SH"}
    exprs = {k[len("SCMP_ARCH_"):]: "AUDIT_ARCH_" + macro.get(k, k[len("SCMP_ARCH_"):])
             for k in arch.AUDIT}
    src = "#include <linux/audit.h>\n" + "".join(f"v_{k} = {e};\n" for k, e in exprs.items())
    out = subprocess.run(["gcc", "-E", "-P", "-"], input=src, capture_output=True, text=True,
                         check=True).stdout
    got = {}
    for m in re.finditer(r"^v_(\w+) = (.*);$", out, re.M):
        e = re.sub(r"(0x[0-9a-fA-F]+|\d+)[UL]+\b", r"\1", m.group(2))
        assert re.fullmatch(r"[\dx()|\sa-fA-F]*", e), (m.group(1), e)
        got["SCMP_ARCH_" + m.group(1)] = eval(e)  # noqa: S307 - checked above
    assert got == arch.AUDIT


def test_this_machine_is_detected_as_libseccomp_and_termios_see_it():
    """The column chosen at import is this machine's (on the arm64 run: aarch64's)."""
    scmp = pytest.importorskip("seccomp", reason="python3-seccomp (hack/setup)")
    import termios
    assert arch.NAME is not None, arch.DESCRIPTION
    assert scmp.system_arch() & 0xFFFFFFFF == arch.AUDIT_ARCH == arch.ARCHES[arch.NAME][1]
    assert arch.NR["seccomp"] == scmp.resolve_syscall(scmp.Arch.NATIVE, "seccomp")
    for name in ("TIOCGWINSZ", "TIOCSWINSZ"):
        assert arch.IOCTL[name] == getattr(termios, name), name
    assert arch.BIG_ENDIAN == (arch.ARCHES[arch.NAME][2] == "big")


def test_each_number_reaches_its_call(tmp_path):
    """Each syscall made by number does what it is called for on this machine (in the arm64
    run: with aarch64's numbers), observed from the outside, not by its return value alone."""
    from runtime.linux import capabilities, sched
    from runtime.linux import sys as lsys

    def capset():
        capabilities.capset(frozenset({0}), frozenset({0}), frozenset())   # CAP_CHOWN alone
        eff = [x for x in Path("/proc/self/status").read_text().splitlines()
               if x.startswith("CapEff:")]
        assert eff == ["CapEff:\t0000000000000001"], eff

    def pivot_root():
        new = tmp_path / "newroot"
        lsys.unshare(lsys.CLONE_NEWNS)
        lsys.mount(None, "/", None, lsys.MS_REC | lsys.MS_PRIVATE)
        lsys.mount("tmpfs", str(new), "tmpfs")
        (new / "old").mkdir()
        (new / "marker").write_text("")
        os.chdir(new)
        lsys.pivot_root(".", "old")
        os.chdir("/")
        assert sorted(os.listdir("/")) == ["marker", "old"], os.listdir("/")
        lsys.umount2("/old", lsys.MNT_DETACH)

    def sched_setattr():
        sched.apply({"policy": "SCHED_BATCH"}, None, None)
        assert os.sched_getscheduler(0) == os.SCHED_BATCH

    (tmp_path / "newroot").mkdir()
    checks = [capset, pivot_root, sched_setattr]
    failed = {fn.__name__: err for fn in checks if (err := in_child(fn))}
    assert not failed, failed


def test_keyctl_number_reaches_keyctl():
    """The container's fresh session keyring (namespaces.new_session_keyring) is made by the
    table's keyctl: it then shows in /proc/keys under its name."""
    import errno

    from runtime.linux import namespaces
    from runtime.linux import sys as lsys
    if not Path("/proc/keys").exists():
        pytest.skip("no /proc/keys: a kernel without keyrings")

    def keyctl():
        if lsys.syscall(lsys.NR["keyctl"], 1, b"_ses.runp-arch-probe") == -1 and \
                lsys.get_errno() == errno.ENOSYS:
            raise NotImplementedError
        namespaces.new_session_keyring("runp-arch-test")
        keys = Path("/proc/keys").read_text()
        assert "_ses.runp-arch-test" in keys, keys

    err = in_child(keyctl)
    if err.startswith("NotImplementedError"):
        pytest.skip("keyctl(2) answers ENOSYS here (a kernel or an emulator without it): runp "
                    "keeps the caller's session keyring, as on a kernel without keys")
    assert not err, err


def test_detect():
    assert arch.detect("x86_64", 64, "little") == "x86_64"
    assert arch.detect("x86_64", 32, "little") == "i386"           # i386 userland, amd64 kernel
    assert arch.detect("aarch64", 64, "little") == "aarch64"
    assert arch.detect("aarch64", 32, "little") == "arm"            # armhf on an arm64 kernel
    assert arch.detect("armv7l", 32, "little") == "arm"
    assert arch.detect("mips64", 64, "little") == "mips64el"
    assert arch.detect("x86_64", 32, "little", "x86_64-linux-gnux32") is None
    assert arch.detect("mips64", 32, "little", "mips64el-linux-gnuabin32") is None
    assert arch.detect("mips64", 64, "big") is None                # mips64 big-endian
    assert arch.detect("sparc64", 64, "big") is None


_FAKE_UNAME = ("import os, sys\n"
               "u = os.uname()\n"
               "os.uname = lambda: os.uname_result((u.sysname, u.nodename, u.release, u.version,"
               " {machine!r}))\n")


def _runp_as(machine: str, *args: str) -> subprocess.CompletedProcess:
    """The installed runp's code, on a machine whose uname says `machine`."""
    launcher = Path(RUNP).read_text().splitlines()
    body = "\n".join(line for line in launcher[1:] if not line.startswith("#"))
    code = _FAKE_UNAME.format(machine=machine) + f"sys.argv[1:] = {list(args)!r}\n" + body
    py = launcher[0][2:].split()[0]
    return subprocess.run([py, "-IS", "-c", code], capture_output=True, text=True, timeout=60)


def test_unknown_architecture_is_one_line_naming_it(bundle, tmp_path):
    """create on an architecture the table lacks: one line naming it, status 1, nothing left
    behind; commands that make none of the calls still work there."""
    root = tmp_path / "state"
    cid = new_id()
    r = _runp_as("sparc64", "--root", str(root), "create", "--bundle", str(bundle.path), cid)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "unsupported architecture sparc64 (64-bit, little-endian)" in lines[0], lines[0]
    assert "x86_64, i386, aarch64" in lines[0], lines[0]
    assert not root.exists() or not os.listdir(root)
    r = _runp_as("sparc64", "--root", str(root), "list", "-q")
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)


def test_a_known_architecture_runs_under_the_same_harness(bundle, tmp_path):
    """The harness above is not what fails: with this machine's own name it runs."""
    root = tmp_path / "state"
    cid = new_id()
    r = _runp_as(os.uname().machine, "--root", str(root), "run", "--bundle", str(bundle.path),
                 cid)
    assert r.returncode == 0, (r.stdout, r.stderr)


# every place a syscall number could be written: syscall(155, ...), c_long(438), a SYS_x = 155
# constant, a per-machine dict of numbers
# (syscall(39) too, not "syscall(2)": the man page)
_LITERAL = re.compile(r"syscall\(\s*(ctypes\.c_long\(\s*\d+\s*\)|\d+)\s*,|syscall\(\s*\d{2,}\s*\)"
                      r"|c_long\(\s*\d{3,}\s*\)"
                      r"|\bSYS_\w+\s*=\s*\d+|\b_*NR_\w+\s*=\s*\d+|\"(x86_64|aarch64)\":\s*\d+")


def _scan(top: Path, skip: str, used: str) -> tuple[list[str], set[str]]:
    """The syscall number literals in top's Python files but `skip`, and the names the `used`
    pattern finds (the table's rows they look up)."""
    found = []
    names = set()
    for path in sorted(top.rglob("*.py")):
        if path.name == skip:
            continue
        text = path.read_text()
        for m in _LITERAL.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(f"{path.relative_to(TOP)}:{line}: {m.group(0)}")
        names.update(re.findall(used, text))
    return found, names


def test_no_syscall_number_outside_the_table():
    found, names = _scan(TOP / "runtime", "arch.py", r"\bNR\[\"(\w+)\"\]")
    assert not found, found
    assert names and names <= set(arch.SYSCALLS), names - set(arch.SYSCALLS)
    assert set(arch.SYSCALLS) <= names, f"unused rows: {set(arch.SYSCALLS) - names}"


def test_no_syscall_number_in_the_tests():
    """The tests take the numbers they make or watch from the table too (arch.number), so that
    they hold on aarch64 (hack/arm64). test_dropin_seccomp_cgroups' raw calls are x86_64's,
    i386's and x32's by design (its helper is built for x86_64 only and skips elsewhere)."""
    # (this file: the pattern above, and its comment)
    found, names = _scan(TOP / "tests", "test_arch.py", r"\bnumber\(\"(\w+)\"")
    assert not found, found
    assert names <= set(ALL_SYSCALLS), names - set(ALL_SYSCALLS)
    assert set(arch.TEST_SYSCALLS) <= names, f"unused rows: {set(arch.TEST_SYSCALLS) - names}"


def test_signal_names_are_the_c_librarys():
    """`runp kill` names: the C library's numbers for this architecture (mips numbers most of
    them differently), RTMIN/RTMAX included."""
    import signal

    from runtime import cli
    assert cli.SIGNALS == {s.name[3:]: s.value for s in signal.Signals
                           if not s.name.startswith("SIGRT")} | {"CLD": signal.SIGCHLD,
                                                                 "IOT": signal.SIGABRT,
                                                                 "POLL": signal.SIGIO}
    assert cli.parse_signal("RTMIN+2") == signal.SIGRTMIN + 2
    assert cli.parse_signal("RTMAX") == signal.SIGRTMAX
    assert cli.parse_signal(str(signal.SIGRTMAX)) == signal.SIGRTMAX
    with pytest.raises(cli.UsageError):
        cli.parse_signal(str(signal.SIGRTMAX + 1))


# --- the arm64 run -----------------------------------------------------------------------------

ARM64 = TOP / "hack" / "arm64"


def run_arm64(capsys, *args: str) -> tuple[str, dict[str, int]]:
    """hack/arm64 with args: its output and the counts of its pytest summary, after checking
    what every run must show (skips the test when hack/arm64 cannot run here, exit 77)."""
    t0 = time.monotonic()
    r = subprocess.run([str(ARM64), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=3600)
    took = time.monotonic() - t0
    if r.returncode == 77:   # hack/arm64: the emulation cannot be set up here
        pytest.skip(r.stdout.strip().splitlines()[-1])
    summary = [line for line in r.stdout.splitlines() if re.search(r"\d+ passed", line)]
    with capsys.disabled():
        print(f"\n[hack/arm64 {' '.join(args)} took {took:.0f} s]\n" + "\n".join(
            line for line in r.stdout.splitlines() if line.startswith("arm64:")), *summary[-1:],
              sep="\n")
    assert r.returncode == 0, r.stdout[-6000:]
    assert "arm64: architecture aarch64" in r.stdout, r.stdout[-3000:]
    assert "arm64: lifecycle passed" in r.stdout, r.stdout[-3000:]
    assert summary, r.stdout[-3000:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error)", summary[-1])}
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0, summary[-1]
    return r.stdout, counts


@pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1")
@pytest.mark.skipif(os.environ.get("RUNP_ARM64") == "1", reason="already inside the arm64 run")
@pytest.mark.skipif(os.geteuid() != 0, reason="hack/arm64 needs root (apt-get, chroot, mounts)")
def test_arm64_run(capsys):
    """hack/arm64: runp's lifecycle and a part of this suite in an arm64 Debian root under
    qemu-user; what the emulation cannot do is skipped there with the reason it found."""
    _, counts = run_arm64(capsys)
    assert counts["passed"] >= 60, counts


@pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1")
@pytest.mark.skipif(os.environ.get("RUNP_ARM64") == "1", reason="already inside the arm64 run")
@pytest.mark.skipif(os.geteuid() != 0, reason="hack/arm64 needs root (apt-get, chroot, mounts)")
def test_arm64_system_run(capsys):
    """hack/arm64 --system: the same root booted with Debian's arm64 kernel (qemu-system-aarch64,
    TCG) proves what qemu-user cannot: exec, masked and readonly paths, a seccomp filter, a user
    namespace, and the tests of exec, seccomp and security (test_security.py, test_cve.py: the
    runc CVE classes, with the seccomp cases' syscall numbers taken from arch.py's table)."""
    out, counts = run_arm64(capsys, "--system")
    for step in ("exec: aarch64 runp pid2", "maskedPaths: /proc/kcore reads 0 bytes",
                 "seccomp: mkdirat denied, EPERM", "user namespace: uid 0 inside, uid_map 0 100000"):
        assert f"arm64: lifecycle: {step}" in out, out[-3000:]
    assert counts["passed"] >= 160, counts   # 181 passed, 16 skipped when added
