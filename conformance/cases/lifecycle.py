"""The "lifecycle/state" cases: the operations' effect on the container and its state (runtime.md
State, Lifecycle, Operations)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

from harness import STATUSES, T, alive, ns_inode, read, status_field, wait_exists
from registry import case, check, eq


S = "lifecycle/state"


@case(S, "state.created", "create leaves a container in state created with the state fields",
      "runtime.md#query-state", "This operation MUST return the state of a container as specified in the State section.")
def _(t: T):
    b = t.bundle("sleep", "10")
    b.config["annotations"] = {"org.example.conformance": "yes"}
    cid = t.create(b)
    st = t.state(cid)
    eq(st.get("id"), cid, "state.id")
    eq(st.get("status"), "created", "state.status")
    check(isinstance(st.get("pid"), int) and st["pid"] > 0, f"state.pid {st.get('pid')!r} is no pid")
    check(alive(st["pid"]), f"state.pid {st['pid']} is not a live process")
    eq(st.get("bundle"), str(b.path), "state.bundle")
    check(isinstance(st.get("ociVersion"), str) and st["ociVersion"], "state.ociVersion is empty")


@case(S, "state.schema", "the state JSON adheres to schema/state-schema.json",
      "runtime.md#state", "When serialized in JSON, the format MUST adhere to the JSON Schema schema/state-schema.json.")
def _(t: T):
    b = t.bundle("sleep", "10")
    b.config["annotations"] = {"org.example.a": "1", "org.example.b": "two"}
    cid = t.create(b)
    for phase in ("created", "running", "stopped"):
        if phase == "running":
            t.start(cid)
        if phase == "stopped":
            t.kill(cid, "KILL")
            t.wait_exit(cid)
        st = t.state(cid)
        for k in ("ociVersion", "id", "status", "bundle"):
            check(k in st, f"{phase}: required property {k} missing")
        check(re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.+-]+)?(\+[0-9A-Za-z.-]+)?", st["ociVersion"]) is not None,
              f"{phase}: ociVersion {st['ociVersion']!r} is not SemVer")
        check(isinstance(st["id"], str), f"{phase}: id is not a string")
        check(st["status"] in STATUSES, f"{phase}: status {st['status']!r} not in {STATUSES}")
        eq(st["status"], phase, "status")
        if "pid" in st:
            check(isinstance(st["pid"], int) and st["pid"] >= 0, f"{phase}: pid {st['pid']!r} is not an integer >= 0")
        check(isinstance(st["bundle"], str), f"{phase}: bundle is not a string")
        ann = st.get("annotations", {})
        check(isinstance(ann, dict) and all(isinstance(k, str) and k and isinstance(v, str)
                                            for k, v in ann.items()),
              f"{phase}: annotations {ann!r} is not a map of strings")


@case(S, "create.not_run", "the user program does not run at create",
      "runtime.md#create", "process.args MUST NOT be applied until triggered by the start operation.")
def _(t: T):
    b = t.bundle().sh("echo ran > /out/ran")
    cid = t.create(b)
    time.sleep(0.3)
    check(not (b.out / "ran").exists(), "the program ran before start")
    eq(t.status(cid), "created", "status after create")


@case(S, "start.runs", "start runs the program given by process",
      "runtime.md#start", "This operation MUST run the user-specified program as specified by process.")
def _(t: T):
    b = t.bundle().args("sh", "-c", "echo \"$0:$1\" > /out/ran", "zero", "one")
    cid = t.create(b)
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "ran", "").strip(), "zero:one", "what the program wrote")


@case(S, "state.running", "a started container whose program runs is running",
      "runtime.md#state", "running: the container process has executed the user-specified program but has not exited")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    eq(t.status(cid), "running", "status after start")


@case(S, "state.stopped", "a container whose process exited is stopped",
      "runtime.md#state", "stopped: the container process has exited")
def _(t: T):
    cid = t.create(t.bundle("true"))
    t.start(cid)
    t.wait_exit(cid)
    t.wait_status(cid, "stopped", 5)


@case(S, "state.pid", "state.pid is the container process, as seen from the runtime's pid namespace",
      "runtime.md#state", "pid ... is the ID of the container process. For hooks executed in the runtime namespace, it is the pid as seen by the runtime.")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    pid = t.state(cid)["pid"]
    eq(read(f"/proc/{pid}/cmdline").split("\0")[:2], ["sleep", "10"], f"/proc/{pid}/cmdline")
    check(ns_inode(pid, "pid") != ns_inode("self", "pid"), "the process is not in a new pid namespace")
    eq(status_field(pid, "NSpid").split()[-1], "1", "its pid inside the container")


@case(S, "state.bundle_absolute", "state.bundle is absolute even when create got a relative path",
      "runtime.md#state", "bundle (string, REQUIRED) is the absolute path to the container's bundle directory.")
def _(t: T):
    b = t.bundle("sleep", "10")
    cid = t.create(b, cwd=str(b.path.parent), bundle_arg=b.path.name)
    eq(t.state(cid).get("bundle"), str(b.path), "state.bundle")


@case(S, "state.annotations", "state.annotations are the config's annotations",
      "runtime.md#state", "annotations (map, OPTIONAL) contains the list of annotations associated with the container.")
def _(t: T):
    b = t.bundle("true")
    ann = {"org.example.key": "value", "com.example.other": "x y"}
    b.config["annotations"] = ann
    cid = t.create(b)
    eq(t.state(cid).get("annotations"), ann, "state.annotations")


@case(S, "create.config_frozen", "changing config.json after create does not affect the container",
      "runtime.md#lifecycle", "Any updates to config.json after this step MUST NOT affect the container.")
def _(t: T):
    b = t.bundle().sh("echo original > /out/which; hostname > /out/host")
    cid = t.create(b)
    b.sh("echo changed > /out/which")
    b.config["hostname"] = "changed-host"
    b.write()
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "which", "").strip(), "original", "the program that ran")
    eq(read(b.out / "host", "").strip(), "oci-conformance", "the hostname")


@case(S, "kill.signal", "kill delivers the signal to the container process",
      "runtime.md#kill", "This operation MUST send the specified signal to the container process.")
def _(t: T):
    b = t.bundle().sh("trap 'echo USR1 > /out/sig; exit 3' USR1; touch /out/ready; "
                      "while :; do sleep 0.05; done")
    cid = t.create(b)
    t.start(cid)
    wait_exists(b.out / "ready")
    t.kill(cid, "USR1")
    rc = t.wait_exit(cid)
    eq(read(b.out / "sig", "").strip(), "USR1", "what the trap recorded")
    check(rc in (3, None), f"exit status {rc}, expected 3 from the trap")


@case(S, "kill.created", "kill also works on a created container",
      "runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST have no effect")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.kill(cid, "KILL")
    t.wait_exit(cid)
    t.wait_status(cid, "stopped", 5)


@case(S, "kill.signal_names", "kill accepts the signal by name and by number",
      "runtime.md#kill", "This operation MUST send the specified signal to the container process.")
def _(t: T):
    for sig, name in (("TERM", "TERM"), ("SIGHUP", "HUP"), ("10", "USR1")):
        b = t.bundle().sh(f"trap 'echo {name} > /out/sig; exit 0' {name}; touch /out/ready; "
                          "while :; do sleep 0.05; done")
        cid = t.create(b)
        t.start(cid)
        wait_exists(b.out / "ready")
        t.kill(cid, sig)
        t.wait_exit(cid)
        eq(read(b.out / "sig", "").strip(), name, f"kill {sig}")
        t.delete(cid)


@case(S, "delete.resources", "delete removes the container, its process and its cgroup",
      "runtime.md#delete", "Deleting a container MUST delete the resources that were created during the create step.")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    pid = t.pids[cid]
    cg = [p for p in t.s.cg.paths_for(t.cgpaths[cid]) if os.path.isdir(p)]
    check(bool(cg), f"no cgroup {t.cgpaths[cid]} while the container runs")
    t.kill(cid, "KILL")
    t.wait_exit(cid)
    t.delete(cid)
    t.assert_gone(cid, "after delete")
    check(not alive(pid), "the container process survived delete")
    p = t.rt("list", "--format", "json")
    check(cid not in p.out, "the container is still listed")


@case(S, "delete.keeps_foreign", "delete keeps what the container used but did not create",
      "runtime.md#delete", "Note that resources associated with the container, but not created by this container, MUST NOT be deleted.")
def _(t: T):
    if not shutil.which("ip"):
        t.skip("no ip(8) to make a named network namespace")
    netns = f"oci-conf-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", netns], capture_output=True).returncode != 0:
        t.skip("ip netns add failed")
    t.defer(lambda: subprocess.run(["ip", "netns", "del", netns], capture_output=True))
    src = t.dir / "shared-src"
    src.mkdir()
    (src / "keep").write_text("keep")
    b = t.bundle("true").mount("/shared", "bind", str(src), ["bind"])
    b.linux["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
                             {"type": "network", "path": f"/run/netns/{netns}"}]
    r = t.ok_run(b)
    check(os.path.exists(f"/run/netns/{netns}"), "the joined network namespace was removed")
    check((src / "keep").exists(), "the bind-mount source lost its content")
    check((b.rootfs / "bin" / "busybox").exists() and (b.path / "config.json").exists(),
          "the bundle lost its content")
    del r


@case(S, "scope.independent", "operations on one container leave another one alone",
      "runtime.md#scope-of-a-container", "The entity using a runtime to create a container MUST be able to use the operations defined in this specification against that same container.")
def _(t: T):
    b = t.bundle("sleep", "10")
    a = t.create(b)
    c = t.create(b)
    t.start(a)
    t.start(c)
    t.kill(a, "KILL")
    t.wait_exit(a)
    t.wait_status(a, "stopped")
    eq(t.status(c), "running", "the other container's status")
    t.delete(a)
    eq(t.status(c), "running", "the other container's status after delete")
