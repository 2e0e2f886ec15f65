"""A small Kubernetes CRI v1 client: what a kubelet asks containerd's CRI plugin, and no more.

The messages are written here from the field numbers of the published CRI API
(k8s.io/cri-api, pkg/apis/runtime/v1/api.proto) as plain dicts, encoded and decoded by the few
lines of protobuf wire format below; grpcio carries them (its generic unary call, with our own
serializer and deserializer). No generated code: the project has no protoc step, and the client
needs ten messages out of the API's two hundred.

Used by tests/integration/test_cri.py (runp as a runtime handler of the CRI plugin) and by
`hack/bench --clients` (the pod lifecycle row). Not part of the runtime: grpcio is a test/bench
dependency only.
"""
from __future__ import annotations

import time
from typing import Any, Union

# --- protobuf wire format (proto3, the subset the CRI messages use) ------------------------------
#
# A schema maps a field name to (field number, type). Types: "string", "bytes", "int" (int32/int64,
# two's complement varint), "uint", "bool", "enum", "map" (map<string, string>), a nested schema
# (a message), or a one-element list of any of these (repeated).

Schema = dict[str, tuple[int, Any]]
VARINT, LEN = 0, 2
_VARINT_TYPES = ("int", "uint", "bool", "enum")


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64: ten bytes, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint(num << 3 | wire)


def _scalar(num: int, kind: str, value: Any) -> bytes:
    if kind in _VARINT_TYPES:
        return _key(num, VARINT) + _varint(int(value))
    data = value.encode() if kind == "string" else bytes(value)
    return _key(num, LEN) + _varint(len(data)) + data


MAP_ENTRY: Schema = {"key": (1, "string"), "value": (2, "string")}


def encode(schema: Schema, msg: dict) -> bytes:
    """A dict (field names of `schema`) as protobuf bytes; None and unknown names are errors
    a typo should not hide, so unknown names raise KeyError."""
    out = bytearray()
    for name, value in msg.items():
        if value is None:
            continue
        num, kind = schema[name]
        if isinstance(kind, list):
            for item in value:
                out += _field(num, kind[0], item)
        elif kind == "map":
            for k, v in value.items():
                out += _field(num, MAP_ENTRY, {"key": k, "value": v})
        else:
            out += _field(num, kind, value)
    return bytes(out)


def _field(num: int, kind: Union[str, Schema], value: Any) -> bytes:
    if isinstance(kind, dict):
        data = encode(kind, value)
        return _key(num, LEN) + _varint(len(data)) + data
    return _scalar(num, kind, value)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def decode(schema: Schema, data: bytes) -> dict:
    """Protobuf bytes as a dict of the fields `schema` names (others are skipped, as any
    protobuf reader does); absent scalars get proto3's defaults only when read through get()."""
    by_num = {num: (name, kind) for name, (num, kind) in schema.items()}
    out: dict[str, Any] = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == VARINT:
            raw, i = _read_varint(data, i)
        elif wire == LEN:
            size, i = _read_varint(data, i)
            raw, i = data[i:i + size], i + size
        elif wire == 1:
            raw, i = data[i:i + 8], i + 8
        elif wire == 5:
            raw, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"protobuf: wire type {wire} of field {num} is not supported")
        if num not in by_num:
            continue
        name, kind = by_num[num]
        if isinstance(kind, list):
            out.setdefault(name, []).append(_value(kind[0], raw))
        elif kind == "map":
            entry = decode(MAP_ENTRY, raw)
            out.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        else:
            out[name] = _value(kind, raw)
    return out


def _value(kind: Union[str, Schema], raw: Any) -> Any:
    if isinstance(kind, dict):
        return decode(kind, raw)
    if kind == "int":
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind == "bool":
        return bool(raw)
    if kind == "string":
        return raw.decode()
    return raw  # uint, enum: the number; bytes: the bytes


# --- the CRI v1 messages (runtime.v1, field numbers of api.proto) --------------------------------

NAMESPACE_POD, NAMESPACE_CONTAINER, NAMESPACE_NODE = 0, 1, 2  # NamespaceMode
CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED = 0, 1, 2  # ContainerState
SANDBOX_READY, SANDBOX_NOTREADY = 0, 1  # PodSandboxState

NamespaceOption: Schema = {"network": (1, "enum"), "pid": (2, "enum"), "ipc": (3, "enum")}
Int64Value: Schema = {"value": (1, "int")}
PodSandboxMetadata: Schema = {"name": (1, "string"), "uid": (2, "string"),
                              "namespace": (3, "string"), "attempt": (4, "uint")}
LinuxSandboxSecurityContext: Schema = {
    "namespace_options": (1, NamespaceOption), "run_as_user": (3, Int64Value),
    "readonly_rootfs": (4, "bool"), "privileged": (6, "bool")}
LinuxPodSandboxConfig: Schema = {"cgroup_parent": (1, "string"),
                                 "security_context": (2, LinuxSandboxSecurityContext),
                                 "sysctls": (3, "map")}
PodSandboxConfig: Schema = {
    "metadata": (1, PodSandboxMetadata), "hostname": (2, "string"), "log_directory": (3, "string"),
    "labels": (6, "map"), "annotations": (7, "map"), "linux": (8, LinuxPodSandboxConfig)}
RunPodSandboxRequest: Schema = {"config": (1, PodSandboxConfig), "runtime_handler": (2, "string")}
PodSandboxIdMessage: Schema = {"pod_sandbox_id": (1, "string")}  # Run...Response, Stop/Remove
PodSandbox: Schema = {"id": (1, "string"), "metadata": (2, PodSandboxMetadata),
                      "state": (3, "enum"), "runtime_handler": (7, "string")}
ListPodSandboxResponse: Schema = {"items": (1, [PodSandbox])}

ContainerMetadata: Schema = {"name": (1, "string"), "attempt": (2, "uint")}
ImageSpec: Schema = {"image": (1, "string")}
KeyValue: Schema = {"key": (1, "string"), "value": (2, "string")}
LinuxContainerResources: Schema = {
    "cpu_period": (1, "int"), "cpu_quota": (2, "int"), "cpu_shares": (3, "int"),
    "memory_limit_in_bytes": (4, "int"), "oom_score_adj": (5, "int"),
    "cpuset_cpus": (6, "string"), "cpuset_mems": (7, "string"),
    "memory_swap_limit_in_bytes": (10, "int")}
Capability: Schema = {"add_capabilities": (1, ["string"]), "drop_capabilities": (2, ["string"])}
LinuxContainerSecurityContext: Schema = {
    "capabilities": (1, Capability), "privileged": (2, "bool"),
    "namespace_options": (3, NamespaceOption), "run_as_user": (5, Int64Value),
    "run_as_username": (6, "string"), "readonly_rootfs": (7, "bool"),
    "supplemental_groups": (8, ["int"]), "no_new_privs": (11, "bool"),
    "run_as_group": (12, Int64Value), "masked_paths": (13, ["string"]),
    "readonly_paths": (14, ["string"])}
LinuxContainerConfig: Schema = {"resources": (1, LinuxContainerResources),
                                "security_context": (2, LinuxContainerSecurityContext)}
ContainerConfig: Schema = {
    "metadata": (1, ContainerMetadata), "image": (2, ImageSpec), "command": (3, ["string"]),
    "args": (4, ["string"]), "working_dir": (5, "string"), "envs": (6, [KeyValue]),
    "labels": (9, "map"), "annotations": (10, "map"), "log_path": (11, "string"),
    "linux": (15, LinuxContainerConfig)}
CreateContainerRequest: Schema = {"pod_sandbox_id": (1, "string"), "config": (2, ContainerConfig),
                                  "sandbox_config": (3, PodSandboxConfig)}
ContainerIdMessage: Schema = {"container_id": (1, "string")}  # Create...Response, Start, Remove
StopContainerRequest: Schema = {"container_id": (1, "string"), "timeout": (2, "int")}
ContainerStatusRequest: Schema = {"container_id": (1, "string"), "verbose": (2, "bool")}
ContainerStatus: Schema = {
    "id": (1, "string"), "metadata": (2, ContainerMetadata), "state": (3, "enum"),
    "started_at": (5, "int"), "finished_at": (6, "int"), "exit_code": (7, "int"),
    "reason": (10, "string"), "message": (11, "string"), "log_path": (15, "string")}
ContainerStatusResponse: Schema = {"status": (1, ContainerStatus), "info": (2, "map")}
Container: Schema = {"id": (1, "string"), "pod_sandbox_id": (2, "string"), "state": (6, "enum")}
ListContainersResponse: Schema = {"containers": (1, [Container])}
ExecSyncRequest: Schema = {"container_id": (1, "string"), "cmd": (2, ["string"]),
                           "timeout": (3, "int")}
ExecSyncResponse: Schema = {"stdout": (1, "bytes"), "stderr": (2, "bytes"), "exit_code": (3, "int")}
VersionRequest: Schema = {"version": (1, "string")}
VersionResponse: Schema = {"version": (1, "string"), "runtime_name": (2, "string"),
                           "runtime_version": (3, "string"), "runtime_api_version": (4, "string")}
Image: Schema = {"id": (1, "string"), "repo_tags": (2, ["string"])}
ImageStatusRequest: Schema = {"image": (1, ImageSpec)}
ImageStatusResponse: Schema = {"image": (1, Image)}
Empty: Schema = {}

RUNTIME = "runtime.v1.RuntimeService"
IMAGES = "runtime.v1.ImageService"


class CriError(Exception):
    """A CRI call failed: the gRPC status code and containerd's message."""


class CriClient:
    """The RuntimeService and ImageService calls on a CRI socket (unix path)."""

    def __init__(self, socket_path: str, timeout: float = 60.0) -> None:
        import grpc  # a test/bench dependency: imported where it is used
        self._grpc = grpc
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._calls: dict[str, Any] = {}

    def close(self) -> None:
        self.channel.close()

    def call(self, service: str, method: str, req_schema: Schema, resp_schema: Schema,
             request: dict, timeout: float | None = None) -> dict:
        path = f"/{service}/{method}"
        stub = self._calls.get(path)
        if stub is None:
            stub = self._calls[path] = self.channel.unary_unary(
                path, request_serializer=lambda m, s=req_schema: encode(s, m),
                response_deserializer=lambda b, s=resp_schema: decode(s, b))
        try:
            return stub(request, timeout=timeout or self.timeout)
        except self._grpc.RpcError as e:
            raise CriError(f"{method}: {e.code().name}: {e.details()}") from None

    # --- RuntimeService ------------------------------------------------------------------------
    def version(self) -> dict:
        return self.call(RUNTIME, "Version", VersionRequest, VersionResponse, {"version": "v1"})

    def run_pod_sandbox(self, config: dict, runtime_handler: str = "") -> str:
        return self.call(RUNTIME, "RunPodSandbox", RunPodSandboxRequest, PodSandboxIdMessage,
                         {"config": config, "runtime_handler": runtime_handler}
                         )["pod_sandbox_id"]

    def stop_pod_sandbox(self, pod_id: str) -> None:
        self.call(RUNTIME, "StopPodSandbox", PodSandboxIdMessage, Empty, {"pod_sandbox_id": pod_id})

    def remove_pod_sandbox(self, pod_id: str) -> None:
        self.call(RUNTIME, "RemovePodSandbox", PodSandboxIdMessage, Empty,
                  {"pod_sandbox_id": pod_id})

    def list_pod_sandboxes(self) -> list[dict]:
        return self.call(RUNTIME, "ListPodSandbox", Empty, ListPodSandboxResponse, {}
                         ).get("items", [])

    def create_container(self, pod_id: str, config: dict, sandbox_config: dict) -> str:
        return self.call(RUNTIME, "CreateContainer", CreateContainerRequest, ContainerIdMessage,
                         {"pod_sandbox_id": pod_id, "config": config,
                          "sandbox_config": sandbox_config})["container_id"]

    def start_container(self, cid: str) -> None:
        self.call(RUNTIME, "StartContainer", ContainerIdMessage, Empty, {"container_id": cid})

    def stop_container(self, cid: str, timeout: int = 0) -> None:
        self.call(RUNTIME, "StopContainer", StopContainerRequest, Empty,
                  {"container_id": cid, "timeout": timeout})

    def remove_container(self, cid: str) -> None:
        self.call(RUNTIME, "RemoveContainer", ContainerIdMessage, Empty, {"container_id": cid})

    def container_status(self, cid: str, verbose: bool = False) -> dict:
        return self.call(RUNTIME, "ContainerStatus", ContainerStatusRequest,
                         ContainerStatusResponse, {"container_id": cid, "verbose": verbose})

    def list_containers(self) -> list[dict]:
        return self.call(RUNTIME, "ListContainers", Empty, ListContainersResponse, {}
                         ).get("containers", [])

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 30) -> dict:
        r = self.call(RUNTIME, "ExecSync", ExecSyncRequest, ExecSyncResponse,
                      {"container_id": cid, "cmd": cmd, "timeout": timeout}, timeout + 30)
        return {"stdout": r.get("stdout", b""), "stderr": r.get("stderr", b""),
                "exit_code": r.get("exit_code", 0)}

    # --- ImageService --------------------------------------------------------------------------
    def image_status(self, image: str) -> dict:
        return self.call(IMAGES, "ImageStatus", ImageStatusRequest, ImageStatusResponse,
                         {"image": {"image": image}}).get("image", {})

    def wait_image(self, image: str, timeout: float = 30.0) -> None:
        """The CRI plugin learns of images imported with ctr through events: wait for it."""
        deadline = time.monotonic() + timeout
        while not self.image_status(image):
            if time.monotonic() > deadline:
                raise CriError(f"ImageStatus: the CRI plugin does not see {image}")
            time.sleep(0.1)

    def remove_everything(self) -> list[str]:
        """Stop and remove every pod (and with it its containers); returns what failed."""
        problems = []
        for pod in self.list_pod_sandboxes():
            for step in (self.stop_pod_sandbox, self.remove_pod_sandbox):
                try:
                    step(pod["id"])
                except CriError as e:
                    problems.append(str(e))
        return problems


# --- what a kubelet sends ------------------------------------------------------------------------

def pod_config(name: str, uid: str, log_dir: str, cgroup_parent: str = "") -> dict:
    """A PodSandboxConfig as a kubelet sends it for a pod on the host network (no CNI here):
    its own PID and IPC namespaces."""
    return {
        "metadata": {"name": name, "uid": uid, "namespace": "runp-test", "attempt": 0},
        "log_directory": log_dir,
        "labels": {"app": name},
        "linux": {
            "cgroup_parent": cgroup_parent,
            "security_context": {"namespace_options": {
                "network": NAMESPACE_NODE, "pid": NAMESPACE_CONTAINER, "ipc": NAMESPACE_POD}},
        },
    }


def container_config(name: str, image: str, command: list[str], log_path: str,
                     resources: dict | None = None, security: dict | None = None) -> dict:
    linux: dict = {"security_context": {"namespace_options": {
        "network": NAMESPACE_NODE, "pid": NAMESPACE_CONTAINER, "ipc": NAMESPACE_POD},
        **(security or {})}}
    if resources:
        linux["resources"] = resources
    return {"metadata": {"name": name, "attempt": 0}, "image": {"image": image},
            "command": command, "log_path": log_path, "linux": linux}
