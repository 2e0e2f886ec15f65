"""The errors runp reports: each becomes one line on stderr (and in --log) and exit status 1
(255 from `exec`, as runc's: runtime/cli.py)."""


def json_type(val: object) -> str:
    """The JSON name of a parsed value's type, for "must be X, not Y" messages."""
    if val is None:
        return "null"
    if isinstance(val, bool):
        return "boolean"
    if isinstance(val, int):
        return "integer"
    if isinstance(val, float):
        return "number"
    if isinstance(val, str):
        return "string"
    if isinstance(val, list):
        return "array"
    if isinstance(val, dict):
        return "object"
    return type(val).__name__


def os_error_text(e: OSError) -> str:
    """An OSError's reason as Go, and so runc, words it ("no such file or directory"): callers
    match those phrases (podman maps them to exit codes 126 and 127)."""
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


class RuntimeFailure(Exception):
    """An error to report to the caller as one line. `exit_code` is the process exit status."""

    exit_code = 1


class ConfigError(RuntimeFailure):
    """config.json is invalid: names the JSON path of the offending value."""

    def __init__(self, path: str, problem: str, file: str = "config.json") -> None:
        self.path = path
        self.problem = problem
        self.file = file
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + problem)


class ContainerNotFound(RuntimeFailure):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id} does not exist")


class ContainerExists(RuntimeFailure):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id {container_id} already exists")


class NotRunning(RuntimeFailure):
    def __init__(self, container_id: str = "") -> None:
        super().__init__("container not running")
