"""Compiled seccomp filters kept in the state root (runtime/linux/seccomp_cache.py), for real:
the cached program is the one the container gets, on create and on exec; a stale, damaged or
linked entry is compiled again; a hit never loads libseccomp; the cache is never a container."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import RUNP, TOP
from runtime.linux import seccomp as sc
from runtime.linux import seccomp_cache
from runtime.state import CACHE_DIR

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

VENV_PY = os.path.join(TOP, ".venv", "bin", "python3")
# mkdir returns EROFS: an errno nothing else gives for mkdir in /tmp, so the answer can only
# come from the filter
PROFILE = {"defaultAction": "SCMP_ACT_ALLOW",
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                         "errnoRet": 30}]}
TRY_MKDIR = ["sh", "-c", "mkdir /tmp/d 2>&1; echo rc=$?"]


def _entries(root: Path) -> list[Path]:
    d = root / CACHE_DIR
    return sorted(p for p in d.iterdir() if ".tmp." not in p.name) if d.exists() else []


def _with_profile(bundle, profile=PROFILE, args=TRY_MKDIR):
    bundle.config["linux"]["seccomp"] = profile
    bundle.config["process"]["args"] = args
    return bundle.write()


def _run(runp, bundle, cid) -> str:
    p = runp("run", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def test_entry_made_once_and_used_by_the_next_create(runp, bundle, cid):
    _with_profile(bundle)
    assert "Read-only file system" in _run(runp, bundle, cid + "a")
    [entry] = _entries(runp.root)
    assert stat.S_IMODE((runp.root / CACHE_DIR).stat().st_mode) == 0o700
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    # The next create takes the program from the entry: give it one that answers ENOSPC
    # instead (the same profile with another errno, compiled here), and the container sees that.
    other = sc.build({**PROFILE, "syscalls": [{**PROFILE["syscalls"][0], "errnoRet": 28}]})
    data = entry.read_bytes()
    header = data[:data.index(b"\n\n") + 2]
    entry.write_bytes(header + other.bpf)
    assert "No space left on device" in _run(runp, bundle, cid + "b")
    assert _entries(runp.root) == [entry]
    assert runp.ids() == []  # the cache is not a container (list)


def test_exec_uses_the_cache_too(runp, bundle, cid):
    _with_profile(bundle, args=["sleep", "60"])
    runp("run", "--detach", "--bundle", str(bundle.path), cid)
    try:
        [entry] = _entries(runp.root)
        other = sc.build({**PROFILE, "syscalls": [{**PROFILE["syscalls"][0], "errnoRet": 28}]})
        data = entry.read_bytes()
        entry.write_bytes(data[:data.index(b"\n\n") + 2] + other.bpf)
        out = runp("exec", cid, *TRY_MKDIR).stdout.decode()
        assert "No space left on device" in out
    finally:
        runp("delete", "--force", cid)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "stale-library", "symlink",
                                    "odd-length"])
def test_a_bad_entry_is_compiled_again(runp, bundle, cid, tmp_path, damage):
    _with_profile(bundle)
    _run(runp, bundle, cid + "a")
    [entry] = _entries(runp.root)
    good = entry.read_bytes()
    if damage == "garbage":
        entry.write_bytes(b"not a filter")
    elif damage == "truncated":
        entry.write_bytes(good[:good.index(b"\n\n")])
    elif damage == "odd-length":
        entry.write_bytes(good + b"\0\0\0")
    elif damage == "stale-library":  # libseccomp upgraded since: its identity differs
        lib = next(ln for ln in good.split(b"\n") if ln.startswith(b"lib "))
        name, ident = lib[4:].split(b" ", 1)
        entry.write_bytes(good.replace(lib, b"lib " + name + b" 1 2 3 4"))
    elif damage == "symlink":  # never followed: the entry is replaced by a file of its own
        target = tmp_path / "elsewhere"
        target.write_bytes(good)
        entry.unlink()
        entry.symlink_to(target)
    assert "Read-only file system" in _run(runp, bundle, cid + "b")
    assert entry.read_bytes() == good and not entry.is_symlink()


def test_a_hit_does_not_load_libseccomp(runp, bundle, cid):
    """The point of the cache: neither runp nor its init imports the binding (or ctypes)."""
    _with_profile(bundle, args=["true"])
    _run(runp, bundle, cid + "a")

    def imported(c: str) -> set[str]:
        """The modules `run` and its init imported (-X importtime's names, both processes)."""
        p = subprocess.run([VENV_PY, "-IS", "-X", "importtime", RUNP, "--root", str(runp.root),
                            "run", "--bundle", str(bundle.path), c],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return {line.rsplit("|", 1)[-1].strip() for line in p.stderr.decode().splitlines()
                if "|" in line}
    hit = imported(cid + "b")
    assert "runtime.linux.seccomp" in hit  # (install)
    assert "seccomp" not in hit and "ctypes" not in hit, sorted(hit)
    for entry in _entries(runp.root):
        entry.unlink()
    assert "seccomp" in imported(cid + "c")  # a miss compiles: libseccomp is loaded


def test_profiles_differ_entries_differ_and_the_oldest_go(tmp_path, monkeypatch):
    monkeypatch.setattr(seccomp_cache, "MAX_ENTRIES", 3)
    progs, names = [], []
    for n in range(5):
        cfg = {**PROFILE, "syscalls": [{**PROFILE["syscalls"][0], "errnoRet": 20 + n}]}
        progs.append(seccomp_cache.compiled(cfg, str(tmp_path)).bpf)
        names.append(tmp_path / CACHE_DIR / seccomp_cache._key(cfg))
        os.utime(names[-1], ns=(n + 1, n + 1))  # one after the other (coarse clock: ties)
    assert len(set(progs)) == 5
    assert _entries(tmp_path) == sorted(names[2:])  # the two oldest went
    # and a profile compiled before is found again without libseccomp
    monkeypatch.setattr(seccomp_cache, "build", lambda *a: pytest.fail("compiled again"))
    cfg = {**PROFILE, "syscalls": [{**PROFILE["syscalls"][0], "errnoRet": 24}]}
    assert seccomp_cache.compiled(cfg, str(tmp_path)).bpf == progs[4]


def test_no_profile_no_cache(tmp_path):
    assert seccomp_cache.compiled(None, str(tmp_path)) is None
    assert seccomp_cache.compiled({}, str(tmp_path)) is None
    assert not (tmp_path / CACHE_DIR).exists()


def test_an_unwritable_root_still_creates(runp, bundle, cid):
    """The cache is best effort: a root where the entry cannot be written (here a file in the
    way of the directory) compiles every time, and says nothing."""
    _with_profile(bundle)
    runp.root.mkdir(parents=True, exist_ok=True)
    (runp.root / CACHE_DIR).write_text("in the way")
    try:
        assert "Read-only file system" in _run(runp, bundle, cid)
    finally:
        (runp.root / CACHE_DIR).unlink()


def test_a_bad_profile_fails_before_anything_is_made(runp, bundle, cid):
    _with_profile(bundle, {"defaultAction": "SCMP_ACT_ALLOW",
                           "architectures": ["SCMP_ARCH_NOPE"]})
    p = runp("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert "config.json: linux.seccomp.architectures[0]" in p.stderr.decode(), p.stderr
    assert not (runp.root / cid).exists() and _entries(runp.root) == []
