"""Rootless podman (issue 14): an ordinary user's podman drives runp, every scenario also with runc.

podman, run by the throw-away user of the `rootless_user` fixture (tests/rootless_user.py: a
subuid/subgid range, a 0700 XDG_RUNTIME_DIR), starts conmon and the runtime as root of its own
user namespace: uid 0 there, no real privileges, cgroups not writable (cgroup v1 here, with the
cgroupfs manager). The runtime keeps its state in $XDG_RUNTIME_DIR/runp (runc: .../runc).
podman's storage lives in the user's home and goes with it. Each test removes its containers;
the fixture checks that neither podman nor the runtime knows any afterwards.
"""
from __future__ import annotations

import os
import shutil

import pytest

from .conftest import IMAGE, PODMAN_TOOLS, _which, containers_conf, ensure_tools, wait_for

pytestmark = pytest.mark.integration


class RootlessPodman:
    """`podman` as the user, with one runtime (runp by default through containers.conf; runc
    with --runtime runc)."""

    def __init__(self, user, conf: str, runtime: str) -> None:
        self.user = user
        self.runtime = runtime
        self.env = user.env(CONTAINERS_CONF=conf)

    def __call__(self, *args: str, check: bool = True, timeout: float = 120):
        argv = ["podman", *(["--runtime", "runc"] if self.runtime == "runc" else []), *args]
        p = self.user.run(argv, env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def runtime_state(self) -> list[str]:
        """What the runtime keeps in its default root (podman never passes --root)."""
        d = self.user.runtime_dir / self.runtime
        if self.runtime == "runp":  # but its compiled seccomp filters (runtime/state.py)
            from runtime.state import CACHE_DIR
            return sorted(n for n in os.listdir(d) if n != CACHE_DIR) if d.is_dir() else []
        return sorted(os.listdir(d)) if d.is_dir() else []


@pytest.fixture(scope="session")
def rootless_podman_conf(rootless_user, rootfs_tar):
    """containers.conf for the user (runp the default runtime, runc beside it) and the busybox
    image imported into its storage."""
    ensure_tools(PODMAN_TOOLS)
    u = rootless_user
    confdir = u.home / ".config" / "containers"
    confdir.mkdir(parents=True)
    conf = confdir / "containers.conf"
    conf.write_text(containers_conf(u.runp))
    tar = u.home / "busybox-rootfs.tar"
    shutil.copy(rootfs_tar, tar)
    for p in (u.home / ".config", confdir, conf, tar):
        os.chown(p, u.uid, u.gid)
    pm = RootlessPodman(u, str(conf), "runp")
    try:
        p = pm("import", str(tar), IMAGE, check=False)
        if p.returncode != 0:
            pytest.skip(f"rootless podman cannot import an image here: {p.stderr.strip()[-300:]}")
        tar.unlink()
        yield str(conf)
    finally:
        pm("rm", "--all", "--force", "--time", "0", check=False)
        pm("system", "reset", "--force", check=False, timeout=300)


@pytest.fixture
def rpodman(rootless_user, rootless_podman_conf, runtime):
    pm = RootlessPodman(rootless_user, rootless_podman_conf, runtime)
    yield pm
    rm = pm("rm", "--all", "--force", "--time", "0", check=False)
    left = pm("ps", "--all", "--quiet").stdout.split()
    assert not left, f"podman containers left: {left} ({rm.stderr.strip()})"
    wait_for(lambda: not pm.runtime_state(), 10, f"{runtime}'s state to be empty")


def test_rootless_run_prints_root(rpodman, runtime):
    """Issue 14's command: podman's root inside is the user outside."""
    binary = rpodman.user.runp if runtime == "runp" else (_which("runc") or "runc")
    p = rpodman.user.run(["podman", "--cgroup-manager=cgroupfs", "--runtime", binary, "run", "--rm",
                          "--network", "none", IMAGE, "id"], env=rpodman.env)
    assert (p.returncode, p.stdout) == (0, "uid=0(root) gid=0(root)\n"), p.stderr


def test_rootless_session(rpodman, runtime):
    """run -d, exec (output, exit code, a terminal), logs, stop, rm."""
    pm = rpodman
    pm("run", "-d", "--name", "rs", IMAGE, "sh", "-c", "echo started; exec sleep 1000")
    assert pm("inspect", "--format", "{{.State.Status}}", "rs").stdout.strip() == "running"
    assert runtime == "runc" or len(pm.runtime_state()) == 1
    p = pm("exec", "rs", "sh", "-c", "echo from exec; id -u; exit 4", check=False)
    assert (p.returncode, p.stdout) == (4, "from exec\n0\n"), p.stderr
    assert pm("exec", "-t", "rs", "tty").stdout.strip().startswith("/dev/pts/")
    wait_for(lambda: pm("logs", "rs").stdout == "started\n", what="the container's output")
    pm("stop", "-t", "1", "rs")
    assert pm("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "rs").stdout.split() \
        == ["exited", "137"]
    pm("rm", "rs")
    assert pm("ps", "-aq").stdout == ""


def test_rootless_volumes(rpodman):
    """A named volume (in the user's storage) and a bind of a directory of the user's."""
    pm, u = rpodman, rpodman.user
    share = u.home / "share"
    share.mkdir(exist_ok=True)
    (share / "hello").write_text("from the host\n")
    for p in (share, share / "hello"):
        os.chown(p, u.uid, u.gid)
    vol = f"v-{pm.runtime}-{os.getpid()}"
    try:
        pm("volume", "create", vol)
        p = pm("run", "--rm", "-v", f"{vol}:/data", "-v", f"{share}:/share", IMAGE, "sh", "-c",
               "cat /share/hello; echo kept > /data/f; echo made > /share/made")
        assert p.stdout == "from the host\n"
        assert pm("run", "--rm", "-v", f"{vol}:/data", IMAGE, "cat", "/data/f").stdout == "kept\n"
        st = (share / "made").stat()
        assert (st.st_uid, (share / "made").read_text()) == (u.uid, "made\n")  # root inside = the user
    finally:
        pm("volume", "rm", "--force", vol, check=False)
        shutil.rmtree(share)


def test_rootless_keep_id(rpodman):
    """--userns=keep-id: podman maps the user to itself inside (the runtime gets a user
    namespace of its own to make, with several ranges)."""
    u = rpodman.user
    p = rpodman("run", "--rm", "--userns=keep-id", IMAGE, "sh", "-c", "id -u; id -g")
    assert p.stdout.split() == [str(u.uid), str(u.gid)]


def test_rootless_joins_another_containers_namespaces(rpodman):
    """Namespaces of podman's user namespace, given by path (another container's pid, network,
    ipc, uts): joined; a pid namespace joined goes through stage 1."""
    pm = rpodman
    pm("run", "-d", "--name", "host1", IMAGE, "sleep", "1000")
    p = pm("run", "--rm", *(f"--{ns}=container:host1" for ns in ("pid", "network", "ipc", "uts")),
           IMAGE, "sh", "-c", "cat /proc/1/comm; hostname")
    comm, hostname = p.stdout.split()
    assert comm == "sleep"
    assert hostname == pm("inspect", "--format", "{{.Config.Hostname}}", "host1").stdout.strip()
    pm("rm", "--force", "--time", "0", "host1")


def test_rootless_slirp4netns(rpodman):
    """podman's usual rootless network: a network namespace of its user namespace, with a tap
    device slirp4netns serves."""
    if not _which("slirp4netns"):
        pytest.skip("slirp4netns is not installed")
    p = rpodman("run", "--rm", "--network", "slirp4netns", IMAGE, "ip", "-o", "-4", "addr", "show",
                "tap0")
    assert " inet 10.0.2.100/" in p.stdout
