"""runtime.Container: the lifecycle (create, start, state, kill, delete, run) on the parent side.

Usable from Python as well as through the CLI:

    c = Container.create("/run/runp", "demo", "/path/to/bundle")
    c.start(); c.kill(signal.SIGTERM); c.wait_stopped(); c.delete()
"""

import errno
from . import oslite as os  # os minus its 1 ms import (runtime/oslite.py)
import time

import _signal

from .errors import ContainerNotFound, NotRunning, RuntimeFailure
from .log import log
from .state import CONFIG_FILE, CREATING_FILE, FIFO_FILE, State, StateDir, proc_start_time

TYPE_CHECKING = False  # the spec module is loaded only by the commands that need it
if TYPE_CHECKING:
    from .create import CreateOptions
    from .spec import Spec


class Container:
    def __init__(self, root: str, container_id: str) -> None:
        if not root:  # the Python API's default; the CLI always passes one, and leaves
            from .rootless import DEFAULT_ROOT  # runtime.rootless unloaded (0.1-0.2 ms a call)
            root = DEFAULT_ROOT
        self.dir = StateDir(root, container_id)
        self.id = container_id
        self._state: State | None = None
        self._spec: Spec | None = None
        self.console_master: int | None = None  # foreground terminal: the pty master
        self.hooks_cwd: str | None = None  # poststop's cwd: the bundle when we created it (run)

    # --- reading state ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        if self._state is None:
            if not self.dir.exists():
                raise ContainerNotFound(self.id)
            self._state = self.dir.load()
        return self._state

    def alive(self) -> bool:
        st = self.state
        return st.pid > 0 and proc_start_time(st.pid) == st.start_time

    def status(self, tell_paused: bool = True) -> str:
        """created, running, paused or stopped (creating while a create is under way). Without
        `tell_paused`, a paused container is "running": the freezer is not read, nor
        cgroup_recorded imported (0.2 ms of a `kill` that would not use it)."""
        if not self.dir.exists():
            raise ContainerNotFound(self.id)
        if not os.path.exists(self.dir.file("state.json")):
            return "creating"
        if not self.alive():
            return "stopped"
        if os.path.exists(self.dir.file(FIFO_FILE)):
            return "created"
        if tell_paused and self.state.cgroup:
            from .linux.cgroup_recorded import frozen  # not the whole cgroups package
            if frozen(self.state.cgroup):
                return "paused"
        return "running"

    def oci_state(self) -> dict:
        """The runtime-spec state object (what `runp state` prints)."""
        status = self.status()
        st = self.state
        d = {"ociVersion": st.oci_version, "id": st.id,
             "pid": st.pid if status != "stopped" else 0, "status": status,
             "bundle": st.bundle, "rootfs": st.rootfs, "created": st.created, "owner": st.owner}
        if st.annotations:
            d["annotations"] = st.annotations
        return d

    def cgroup(self):
        from .linux import cgroups
        return cgroups.Manager.from_dict(self.state.cgroup)

    def spec(self) -> "Spec":
        """The config the container was created with (a copy kept in the state dir)."""
        if self._spec is None:
            from . import jsonlite
            with open(self.dir.file(CONFIG_FILE), "rb") as f:
                from .spec import parse
                self._spec = parse(jsonlite.loads(f.read()), self.state.bundle)
        return self._spec

    def _recorded(self, key: str, default):
        """What create recorded about the config in state.json (saves parsing it again)."""
        return self.state.extra.get(key, default)

    # --- create -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str, container_id: str, bundle: str,
               opts: "CreateOptions | None" = None, *, foreground: bool = False) -> "Container":
        """Set up the container and leave its init blocked until start()."""
        self = cls(root, container_id)
        bundle = self.hooks_cwd = os.path.abspath(bundle)
        from .create import CreateOptions, Creator
        from .spec import load
        opts = opts or CreateOptions()
        spec = self._spec = load(bundle)
        log.phase("parse")
        creator = Creator(self.dir, container_id, spec, opts, foreground)
        try:
            creator.run()
        except BaseException:
            creator.cleanup()
            raise
        self._state, self.console_master = creator.state, creator.console_master
        return self

    # --- start ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.dir.lock()
        try:
            status = self.status()
            if status != "created":
                raise RuntimeFailure(f"cannot start a container that has {status}"
                                     if status == "stopped" else
                                     f"cannot start an already {status} container")
            fifo = self.dir.file(FIFO_FILE)
            # with startContainer hooks, wait for the init's verdict on the fifo (hooks.py)
            watch = -1
            if "startContainer" in self._recorded("hooks", ["startContainer"]):
                watch = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except OSError as e:
                    if e.errno in (errno.ENXIO, errno.ENOENT):
                        raise RuntimeFailure("cannot start a container that has stopped") from None
                    raise
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
                os.unlink(fifo)
                if watch >= 0:
                    from .hooks import wait_start_verdict
                    wait_start_verdict(watch)
            finally:
                if watch >= 0:
                    os.close(watch)
            if not self._has_process():
                # the init exits on that byte: the container is stopped, nothing ran
                raise RuntimeFailure("cannot start a container without a process "
                                     "(config.json: process is not set)")
            self._poststart()
        finally:
            self.dir.unlock()

    def _has_process(self) -> bool:
        if not self._recorded("has_process", True):
            return False
        return True

    def _poststart(self) -> None:
        if "poststart" not in self._recorded("hooks", ["poststart"]):
            return
        try:
            spec = self.spec()
        except (OSError, RuntimeFailure):
            return
        if spec.hooks.get("poststart"):
            from . import hooks
            # from the bundle directory, as runc 1.1.5 (which runs them at create, from there)
            hooks.run(spec, "poststart", self._hook_state(spec, "running"), warn_only=True, log=log,
                      cwd=spec.bundle)

    def _hook_state(self, spec: "Spec", status: str) -> bytes:
        from .state import hook_state
        return hook_state(spec, self.id, status, self.state.pid)

    # --- kill -------------------------------------------------------------------------------------
    def kill(self, sig: int, all_processes: bool = False) -> None:
        # paused matters only to the init's SIGKILL, which must thaw it (`podman stop`, a
        # kubelet's StopContainer and `kill ID 0` probes send other signals first)
        status = self.status(tell_paused=sig == _signal.SIGKILL and not all_processes)
        if all_processes:
            if status != "stopped" or self.state.cgroup:
                self._kill_all(sig)
            return
        if status == "stopped":
            raise NotRunning(self.id)
        self._signal_init(sig)
        if status == "paused" and sig == _signal.SIGKILL:
            self.cgroup().thaw()   # as runc: v1 frozen tasks die only once thawed

    def _signal_init(self, sig: int) -> None:
        st = self.state
        try:
            pidfd = os.pidfd_open(st.pid)
        except ProcessLookupError:
            raise NotRunning(self.id) from None
        try:
            if proc_start_time(st.pid) != st.start_time:  # pid reused: not ours
                raise NotRunning(self.id)
            _signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            raise NotRunning(self.id) from None
        finally:
            os.close(pidfd)

    def _kill_all(self, sig: int) -> None:
        if self.state.cgroup:
            # containerd's shim sends `kill --all ID 9` after every container's exit: with
            # nothing left in the cgroup, that is one file read, not the cgroup manager's
            # import (measured: 13.0 -> 9.9 ms of CPU per call; runc about 5)
            from .linux.cgroup_recorded import empty
            if not empty(self.state.cgroup):
                self.cgroup().kill_all(sig)
        elif self.alive():
            self._signal_init(sig)

    # --- delete -----------------------------------------------------------------------------------
    def delete(self, force: bool = False) -> None:
        self.dir.lock()
        try:
            status = self.status()
            if status == "creating":
                status = "stopped" if not self._creator_alive() else status
            if status != "stopped":
                if not force:
                    raise RuntimeFailure(f"cannot delete container {self.id} that is not stopped: "
                                         f"{status}")
                self._force_stop()
            self._destroy()
        finally:
            self.dir.unlock()

    def _creator_alive(self) -> bool:
        return False

    def _force_stop(self) -> None:
        if not os.path.exists(self.dir.file("state.json")):
            return
        shared_pidns = "pid" not in self.state.namespaces or self.state.extra.get("pidns_joined")
        try:
            if self.state.cgroup and (shared_pidns or self.status() == "paused"):
                self.cgroup().kill_all(_signal.SIGKILL)
            else:
                self._signal_init(_signal.SIGKILL)
        except NotRunning:
            pass
        if not self.wait_stopped(timeout=10):
            # e.g. a dying pid-namespace init waits for an exec'd zombie whose parent outside the
            # namespace does not reap it; the cgroup and state are removed all the same
            log.warning(f"container {self.id}: init {self.state.pid} still exiting after SIGKILL")

    def wait_stopped(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def _destroy(self) -> None:
        """Remove everything the container owns: poststop hooks, cgroup, state dir."""
        if os.path.exists(self.dir.file("state.json")):
            st = self.state
            if "poststop" in self._recorded("hooks", ["poststop"]) and \
                    os.path.exists(self.dir.file(CONFIG_FILE)):
                try:
                    spec = self.spec()
                except (OSError, ValueError, RuntimeFailure):
                    spec = None
                if spec is not None and spec.hooks.get("poststop"):
                    from . import hooks
                    hooks.run(spec, "poststop", self._hook_state(spec, "stopped"),
                              warn_only=True, log=log, cwd=self.hooks_cwd)
            if st.extra.get("host_rootfs_mount"):
                from .linux.mounts import detach_rootfs
                try:
                    detach_rootfs(st.rootfs, st.extra["host_rootfs_mount"])
                except OSError as e:
                    log.warning(f"unmount {st.rootfs}: {e}")
            if st.extra.get("intel_rdt"):
                from .linux.intelrdt import remove
                try:
                    remove(st.extra["intel_rdt"])
                except OSError as e:
                    log.warning(f"remove resctrl group: {e}")
            # A cgroup that cannot be removed (still busy after the retries, a unit systemd
            # will not stop) is reported and the rest removed all the same, as runc's destroy
            # does: `delete` still succeeds (runc logs the error and exits 0), and no retried
            # delete runs the poststop hooks a second time.
            try:
                if st.cgroup.get("systemd"):  # a scope: systemd removes it
                    from .linux.cgroups.systemd import stop_recorded
                    stop_recorded(st.cgroup)
                elif st.cgroup:
                    from .linux.cgroup_recorded import remove_recorded
                    remove_recorded(st.cgroup)
            except (OSError, RuntimeFailure) as e:
                log.error(f"container {self.id}: {e}")
        else:
            self._destroy_half_made()
        self.dir.remove()

    def _destroy_half_made(self) -> None:
        """A create killed before it saved state.json (we hold the lock, so it is gone): its
        init may still run (blocked on the exec fifo, or on its way out) in the cgroup the
        create recorded it would make. Move the network devices it moved in back to the host
        while the init's namespace still holds them, kill what is in the cgroup, and remove
        what was made: the cgroup, the resctrl group."""
        from . import jsonlite
        try:
            with open(self.dir.file(CREATING_FILE), "rb") as f:
                made = jsonlite.loads(f.read())
        except (OSError, ValueError):
            return  # killed before it made anything: its processes exit on their own
        if not isinstance(made, dict):
            return
        if made.get("netdevices"):
            _move_netdevs_back(made["netdevices"])
        if made.get("cgroup"):
            self._remove_half_made_cgroup(made["cgroup"])
        if made.get("intel_rdt"):
            from .linux.intelrdt import remove
            try:
                remove(made["intel_rdt"])
            except OSError as e:
                log.warning(f"remove resctrl group: {e}")

    def _remove_half_made_cgroup(self, cg: dict) -> None:
        from .linux import cgroups
        from .linux.cgroup_recorded import remove_recorded
        try:
            mgr = cgroups.Manager.from_dict(cg)
            # only a cgroup this create made is ours to empty: one that existed before may hold
            # another container's processes (create was killed before it checked)
            if mgr.exists() and all(d in (cg.get("created") or []) for d in mgr.dirs()):
                mgr.kill_all(_signal.SIGKILL)
            remove_recorded(cg)
        except (OSError, RuntimeFailure, KeyError, TypeError) as e:
            log.warning(f"remove cgroup: {e}")

    # --- pause / resume ---------------------------------------------------------------------------
    def pause(self) -> None:
        status = self.status()
        if status not in ("running", "created"):
            raise RuntimeFailure("container not running" if status == "stopped"
                                 else f"container {self.id} is {status}, not running")
        if not self.state.cgroup:  # rootless, where the caller's cgroup is not delegated
            raise RuntimeFailure(f"cannot pause container {self.id}: it has no cgroup (rootless, "
                                 "and the caller's cgroup is not delegated)")
        self.cgroup().freeze()

    def resume(self) -> None:
        if self.status() != "paused":
            raise RuntimeFailure(f"container {self.id} is not paused")
        self.cgroup().thaw()


def _move_netdevs_back(rec: dict) -> None:
    """linux.netDevices of a half-made container back to the host, with their names,
    addresses and up state, as a failed create moves them back: only while the init that
    create recorded still holds their namespace (once it is gone, the kernel has destroyed the
    virtual devices and returned the physical ones already)."""
    try:
        pid, start, moved = rec["pid"], rec["start_time"], rec["moved"]
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, KeyError, TypeError):
        return
    try:
        if proc_start_time(pid) != start:  # (checked after the open: the pid was not reused)
            return
        from .linux import netdevices
        for problem in netdevices.move_back(fd, [netdevices.Moved(*m) for m in moved]):
            log.warning(problem)
    finally:
        os.close(fd)
