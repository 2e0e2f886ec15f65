"""The os module for the per-container commands, without the cost of importing os.

`import os` costs about 1.0 ms CPU here (0.56 ms of it _collections_abc, which os needs for
os.environ): half of what runp's own code adds to a `state`, `kill`, `start` or `delete` above
the interpreter's start-up, and callers make those for every container (measured with the
modules on that path importing this instead: runp's share of `state` and `kill` 2.0 -> 1.1 ms,
median of 400 alternating calls). The functions are posix's, the very objects os re-exports;
os.path has the few helpers those commands use, written as posixpath writes them. Anything else
(os.environ, os.makedirs, os.path.normpath, ...) loads the real os on first use, so a module that
imports this as `os` behaves the same and pays only where it needs more (create, run and exec
load os anyway).
"""

import posix
from posix import *  # noqa: F403  (os does the same)
from posix import _exit  # noqa: F401

del environ  # noqa: F821  posix's is bytes -> bytes; os.environ (str) comes from __getattr__


def __getattr__(name: str):
    import os
    return getattr(os, name)


class _Path:
    """os.path: join, exists, isdir and dirname as posixpath has them; the rest is posixpath's."""

    @staticmethod
    def join(a: str, *p: str) -> str:
        if type(a) is not str or any(type(b) is not str for b in p):  # bytes, pathlib.Path
            import posixpath
            return posixpath.join(a, *p)
        path = a
        for b in p:
            if b.startswith("/"):
                path = b
            elif not path or path.endswith("/"):
                path += b
            else:
                path += "/" + b
        return path

    @staticmethod
    def exists(path: str) -> bool:
        try:
            posix.stat(path)
        except (OSError, ValueError):
            return False
        return True

    @staticmethod
    def isdir(path: str) -> bool:
        try:
            st = posix.stat(path)
        except (OSError, ValueError):
            return False
        return st.st_mode & 0o170000 == 0o040000  # S_ISDIR

    @staticmethod
    def dirname(p: str) -> str:
        if type(p) is not str:
            import posixpath
            return posixpath.dirname(p)
        i = p.rfind("/") + 1
        head = p[:i]
        if head and head != "/" * len(head):
            head = head.rstrip("/")
        return head

    def __getattr__(self, name: str):
        import posixpath
        return getattr(posixpath, name)


path = _Path()
