"""runp: an OCI runtime in Python, a drop-in replacement for runc."""
__version__ = "0.1.0"

__all__ = ["Container", "__version__"]


def __getattr__(name: str):
    # runtime.Container without importing the lifecycle code for every CLI call
    if name == "Container":
        from .container import Container
        return Container
    raise AttributeError(name)
