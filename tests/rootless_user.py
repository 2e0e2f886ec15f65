"""A throw-away ordinary user for the rootless tests (tests/test_rootless.py and the rootless
podman integration tests): a unique name, a home, a subuid/subgid range of its own (65536 ids
above 10^9), a private 0700 XDG_RUNTIME_DIR, and a runp it can execute.

remove() takes everything away again, whatever happened: the user's processes and those running
as its subordinate ids (containers, podman's pause process), its home (with podman's storage),
its subuid/subgid lines, its runtime directory and the private copy of runp, if one was made.

The installed runp (.venv/bin/runp) is used when the user can execute it (every parent directory
traversable, as in the development worktrees); otherwise, e.g. a CI clone under /root, a
compiled copy of runtime/ goes into a world-readable temporary directory, with a launcher that
starts the system's python3.11 (the one the venv is made from) exactly as hack/setup's does.
"""
from __future__ import annotations

import compileall
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
RUNP = os.environ.get("RUNP") or str(TOP / ".venv" / "bin" / "runp")
SUBID_FILES = ("/etc/subuid", "/etc/subgid")


def which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")


def missing_tools() -> list[str]:
    """What making the user (and mapping its ranges) needs and this host lacks."""
    return [t for t in ("useradd", "userdel", "usermod", "newuidmap", "newgidmap") if not which(t)]


def _subid_range(name: str, path: str) -> tuple[int, int] | None:
    with open(path) as f:
        for line in f:
            p = line.strip().split(":")
            if len(p) == 3 and p[0] == name:
                return int(p[1]), int(p[2])
    return None


def _free_subid_start() -> int:
    """Above every range in use and above 10^9, aligned to 65536: far from the host ids other
    tests map (100000, 200000, ...; the machine is shared), so that remove() can end every
    process running as one of the user's ids, and only those."""
    end = 1_000_000_000
    for path in SUBID_FILES:
        with open(path) as f:
            for line in f:
                p = line.strip().split(":")
                if len(p) == 3 and p[1].isdigit() and p[2].isdigit():
                    end = max(end, int(p[1]) + int(p[2]))
    return (end + 65535) // 65536 * 65536


class TestUser:
    """An ordinary user with a subuid/subgid range; run() runs a command as it."""

    def __init__(self) -> None:
        self.name = f"runpt{uuid.uuid4().hex[:8]}"
        self.uid = self.gid = -1
        self.home = Path("/nonexistent")
        self.subuid = self.subgid = (0, 0)
        self.runtime_dir = Path("/nonexistent")
        self.runp = RUNP
        self._runp_copy: Path | None = None
        self.made = False

    # --- set-up ------------------------------------------------------------------------------
    def create(self) -> "TestUser":
        _check(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", self.name])
        self.made = True
        pw = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = pw.pw_uid, pw.pw_gid, Path(pw.pw_dir)
        for path, flag in zip(SUBID_FILES, ("--del-subuids", "--del-subgids")):
            auto = _subid_range(self.name, path)  # Debian's useradd picks one from 100000 up
            if auto is not None:
                _check(["usermod", flag, f"{auto[0]}-{auto[0] + auto[1] - 1}", self.name])
        start = _free_subid_start()
        _check(["usermod", "--add-subuids", f"{start}-{start + 65535}",
                "--add-subgids", f"{start}-{start + 65535}", self.name])
        self.subuid = _subid_range(self.name, "/etc/subuid")
        self.subgid = _subid_range(self.name, "/etc/subgid")
        self.runtime_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-run-", dir="/tmp"))
        os.chown(self.runtime_dir, self.uid, self.gid)
        os.chmod(self.runtime_dir, 0o700)
        self.runp = self._reachable_runp()
        return self

    def _reachable_runp(self) -> str:
        try:
            if self.run([RUNP, "--version"]).returncode == 0:
                return RUNP
        except OSError:  # (exec's EACCES, raised here by subprocess)
            pass
        py = os.path.realpath(str(TOP / ".venv" / "bin" / "python"))
        if not os.path.exists(py):
            py = "/usr/bin/python3.11"
        d = Path(tempfile.mkdtemp(prefix=f"{self.name}-runp-", dir="/tmp"))
        self._runp_copy = d
        d.chmod(0o755)
        shutil.copytree(TOP / "runtime", d / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
        compileall.compile_dir(str(d / "runtime"), quiet=1)
        launcher = d / "runp"
        launcher.write_text(f"#!{py} -IS\n# runp for the rootless tests (tests/rootless_user.py)\n"
                            f"import sys\nsys.path[:0] = [{str(d)!r}]\n"
                            "sys.path += ['/usr/local/lib/python3.11/dist-packages', "
                            "'/usr/lib/python3/dist-packages']\nfrom runtime.cli import main\nmain()\n")
        for p in d.rglob("*"):
            p.chmod(0o755 if p.is_dir() or p == launcher else 0o644)
        p = self.run([str(launcher), "--version"])
        assert p.returncode == 0, f"{self.name} cannot run {launcher}: {p.stderr}"
        return str(launcher)

    # --- running things as the user ------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        return {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
                "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "XDG_RUNTIME_DIR": str(self.runtime_dir), "LANG": "C.UTF-8", **extra}

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
            cgroups: tuple[str, ...] = (), timeout: float = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess:
        """Run argv as the user (its ids only, no supplementary groups), first moved (by root)
        into the cgroup directories `cgroups`. stdout/stderr go through files: a detached
        container inherits them and would hold a pipe open. Text output."""
        uid, gid = self.uid, self.gid

        def become_user() -> None:
            for d in cgroups:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(argv, env=env or self.env(), cwd=cwd or str(self.home), stdout=out,
                               stderr=err, timeout=timeout, input=input,
                               stdin=None if input is not None else subprocess.DEVNULL,
                               preexec_fn=become_user)
            out.seek(0)
            err.seek(0)
            p.stdout = out.read().decode(errors="replace")
            p.stderr = err.read().decode(errors="replace")
        return p

    def runp_cmd(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """The user's runp with its default root (no --root: $XDG_RUNTIME_DIR/runp)."""
        return self.run([self.runp, *args], **kw)

    # --- clean-up -----------------------------------------------------------------------------
    def processes(self) -> list[int]:
        """Live pids running as the user or as one of its subordinate uids (its containers).
        Zombies are left out: killed already, they wait for a parent (this machine's pid 1
        reaps late) and cannot be signalled."""
        lo, n = self.subuid
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                status = dict(line.split(":", 1) for line in (d / "status").read_text().splitlines()
                              if ":" in line)
            except OSError:
                continue
            uids = status.get("Uid", "").split()
            if status.get("State", "").strip().startswith("Z"):
                continue
            if any(int(u) == self.uid or lo <= int(u) < lo + n for u in uids):
                out.append(int(d.name))
        return out

    def remove(self) -> None:
        """Everything the user had, gone; raises AssertionError naming what could not be."""
        problems = []
        if self.made:
            for _ in range(50):
                pids = self.processes()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
            else:
                problems.append(f"processes of {self.name} survive SIGKILL: {self.processes()}")
            # --force: a zombie of the user's (see processes()) would make userdel refuse
            p = subprocess.run(["userdel", "--force", "--remove", self.name], capture_output=True,
                               text=True)
            if p.returncode not in (0, 12):  # 12: the home was not removed (checked below)
                problems.append(f"userdel {self.name}: {p.stderr.strip()}")
            if self.home.exists() and str(self.home).startswith("/home/"):
                shutil.rmtree(self.home, ignore_errors=True)
            for path in SUBID_FILES:  # userdel removes them on Debian; make sure
                if _subid_range(self.name, path) is not None:
                    _drop_lines(path, self.name)
        for d in (self.runtime_dir, self._runp_copy):
            if d is not None and d.exists():
                shutil.rmtree(d, ignore_errors=True)
        left = [str(p) for p in (self.home, self.runtime_dir, self._runp_copy)
                if p is not None and p.exists()]
        left += [f for f in SUBID_FILES if _subid_range(self.name, f) is not None]
        try:
            pwd.getpwnam(self.name)
            left.append(f"the user {self.name}")
        except KeyError:
            pass
        if left:
            problems.append(f"left behind: {left}")
        assert not problems, "; ".join(problems)


def _drop_lines(path: str, name: str) -> None:
    with open(path) as f:
        lines = f.readlines()
    with open(path + ".runp-tmp", "w") as f:
        f.writelines(line for line in lines if not line.startswith(name + ":"))
    os.chmod(path + ".runp-tmp", os.stat(path).st_mode & 0o777)
    os.rename(path + ".runp-tmp", path)


def _check(argv: list[str]) -> None:
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
