"""The "operations errors" cases: what an operation must refuse, and that a refused one has no
effect (runtime.md Operations, Errors)."""
from __future__ import annotations

import os
import time

from harness import CGROUP_PARENT, T, alive, our_children, read, wait_exists
from registry import case, check, eq


E = "operations errors"


@case(E, "state.no_id", "state without an id is an error",
      "runtime.md#query-state", "This operation MUST generate an error if it is not provided the ID of a container.")
def _(t: T):
    t.expect_error("state", what="no id was given")


@case(E, "state.unknown", "state of an unknown id is an error",
      "runtime.md#query-state", "Attempting to query a container that does not exist MUST generate an error.")
def _(t: T):
    t.expect_error("state", "oci-no-such-container", what="the container does not exist")


@case(E, "create.no_id", "create without an id is an error and creates nothing",
      "runtime.md#create", "This operation MUST generate an error if it is not provided a path to the bundle and the container ID to associate with the container.")
def _(t: T):
    b = t.bundle("true")
    b.write()
    t.expect_error("create", "--bundle", str(b.path), what="no id was given")
    eq(t.rt("list", "-q").out.split(), [], "containers listed")
    check(not our_children(), "a process was left")


@case(E, "create.no_bundle", "create without a bundle (and no config.json in the cwd) is an error",
      "runtime.md#create", "This operation MUST generate an error if it is not provided a path to the bundle and the container ID to associate with the container.")
def _(t: T):
    empty = t.dir / "empty"
    empty.mkdir()
    cid = t.new_id()
    p = t.rt("create", cid, cwd=str(empty))
    check(p.rc != 0, "create succeeded without a bundle")
    t.assert_gone(cid, "after the failed create")


@case(E, "create.duplicate_id", "a second create with the same id fails and leaves the first alone",
      "runtime.md#create", "If the ID provided is not unique across all containers within the scope of the runtime ... MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b1, b2 = t.bundle("sleep", "10"), t.bundle("sleep", "10")
    cid = t.create(b1)
    before = t.state(cid)
    b2.linux["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}-second"
    b2.write()
    p = t.rt("create", "--bundle", str(b2.path), cid)
    check(p.rc != 0, "the second create succeeded")
    after = t.state(cid)
    eq((after["pid"], after["bundle"], after["status"]), (before["pid"], before["bundle"], "created"),
       "the first container")
    check(not any(os.path.isdir(d) for d in t.s.cg.paths_for(f"/{CGROUP_PARENT}/{cid}-second")),
          "the failed create left its cgroup")
    check(our_children() == [before["pid"]], f"processes: {our_children()}")


@case(E, "create.invalid_id", "an invalid id is an error and creates nothing",
      "runtime.md#create", "... or is not valid in any other way, the implementation MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b = t.bundle("true")
    b.linux.pop("cgroupsPath")
    b.write()
    for bad in ("../escape", "a/b", ""):
        p = t.rt("create", "--bundle", str(b.path), bad)
        check(p.rc != 0, f"create accepted the id {bad!r}")
    check(not (t.s.work / "escape").exists(), "../escape created something outside the root")
    eq(t.rt("list", "-q").out.split(), [], "containers listed")
    check(not our_children(), "a process was left")


@case(E, "create.cannot_apply", "a config that cannot be applied fails create and leaves nothing",
      "runtime.md#create", "If the runtime cannot apply a property as specified in the configuration, it MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b = t.bundle("true").mount("/data", "bind", str(t.dir / "no-such-source"), ["bind"])
    t.create_fails(b, "a bind-mount source does not exist")


@case(E, "errors.no_trace", "a failed create leaves the environment as it was (no mounts, cgroups, processes, state)",
      "runtime.md#errors", "generating an error MUST leave the state of the environment as if the operation were never attempted")
def _(t: T):
    b = t.bundle("/no/such/program")
    b.linux["sysctl"] = {"net.oci.no.such.key": "1"}
    t.create_fails(b, "a sysctl does not exist")
    b2 = t.bundle("true")
    b2.config["root"]["path"] = "no-such-rootfs"
    t.create_fails(b2, "root.path does not exist")


@case(E, "start.no_id", "start without an id is an error",
      "runtime.md#start", "This operation MUST generate an error if it is not provided the container ID.")
def _(t: T):
    t.expect_error("start", what="no id was given")


@case(E, "start.unknown", "start of an unknown id is an error",
      "runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    t.expect_error("start", "oci-no-such-container", what="the container does not exist")


@case(E, "start.running", "start of a running container is an error and has no effect",
      "runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    b = t.bundle().sh("echo run >> /out/count; sleep 10")
    cid = t.create(b)
    t.start(cid)
    wait_exists(b.out / "count")
    pid = t.state(cid)["pid"]
    t.expect_error("start", cid, what="the container is running")
    time.sleep(0.2)
    eq(read(b.out / "count").split(), ["run"], "runs of the program")
    st = t.state(cid)
    eq((st["status"], st["pid"]), ("running", pid), "status and pid")


@case(E, "start.stopped", "start of a stopped container is an error and has no effect",
      "runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    b = t.bundle().sh("echo run >> /out/count")
    cid = t.create(b)
    t.start(cid)
    t.wait_exit(cid)
    t.expect_error("start", cid, what="the container is stopped")
    time.sleep(0.2)
    eq(read(b.out / "count").split(), ["run"], "runs of the program")
    eq(t.status(cid), "stopped", "status")


@case(E, "start.no_process", "a container created without process cannot be started",
      "runtime.md#start", "This operation MUST generate an error if process was not set.")
def _(t: T):
    b = t.bundle()
    del b.config["process"]
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    check(p.rc == 0, f"create refused a config without process, which config.md makes REQUIRED only "
                     f"when start is called: {p}")
    t.pids[cid] = t.state(cid).get("pid", 0)
    t.expect_error("start", cid, what="process was not set")


@case(E, "kill.no_id", "kill without an id is an error",
      "runtime.md#kill", "This operation MUST generate an error if it is not provided the container ID.")
def _(t: T):
    t.expect_error("kill", what="no id was given")


@case(E, "kill.unknown", "kill of an unknown id is an error",
      "runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    t.expect_error("kill", "oci-no-such-container", "KILL", what="the container does not exist")


@case(E, "kill.stopped", "kill of a stopped container is an error and has no effect",
      "runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    cid = t.create(t.bundle("true"))
    t.start(cid)
    t.wait_exit(cid)
    t.wait_status(cid, "stopped")
    t.expect_error("kill", cid, "TERM", what="the container is stopped")
    eq(t.status(cid), "stopped", "status")


@case(E, "delete.no_id", "delete without an id is an error",
      "runtime.md#delete", "This operation MUST generate an error if it is not provided the container ID.")
def _(t: T):
    t.expect_error("delete", what="no id was given")


@case(E, "delete.created", "delete of a created container is an error and has no effect",
      "runtime.md#delete", "Attempting to delete a container that is not stopped MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    b = t.bundle().sh("echo ran > /out/ran")
    cid = t.create(b)
    pid = t.pids[cid]
    t.expect_error("delete", cid, what="the container is created, not stopped")
    st = t.state(cid)
    eq((st["status"], st["pid"]), ("created", pid), "status and pid")
    check(alive(pid), "the container process is gone")
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "ran", "").strip(), "ran", "the program after start")


@case(E, "delete.running", "delete of a running container is an error and has no effect",
      "runtime.md#delete", "Attempting to delete a container that is not stopped MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    pid = t.pids[cid]
    t.expect_error("delete", cid, what="the container is running")
    st = t.state(cid)
    eq((st["status"], st["pid"]), ("running", pid), "status and pid")
    check(alive(pid), "the container process is gone")
