"""What the file connectors share: their options, checked, and writing to a
file a list of results at a time.

A sink writes each list with one ``write`` on an unbuffered file (and an
``fsync`` in a worker thread if asked), so that when ``write`` returns another
reader of the file sees the lines; a write that fails part way is cut off
again, so the file never keeps half a list. Standard output is written from a worker thread, leaving
its file descriptor in blocking mode for the rest of the program.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from typing import IO, Any

from .._core._clock import SYSTEM_CLOCK, Clock
from .._core._time import duration_seconds

__all__ = [
    "STDIO",
    "Output",
    "check_clock",
    "check_directory",
    "check_path",
    "check_poll",
]

#: The path that means standard input (for a source) or standard output (for a sink).
STDIO = "-"


def check_path(path: object, what: str) -> str:
    """``path`` (a ``str`` or ``os.PathLike``) as a ``str``, checked."""
    if not isinstance(path, str | os.PathLike):
        msg = (
            f"{what} path must be a str or an os.PathLike, got {type(path).__name__}: {path!r:.60}"
        )
        raise TypeError(msg)
    name = os.fspath(path)
    if not isinstance(name, str):
        msg = f"{what} path must name a file as text, got bytes: {name!r:.60}"
        raise TypeError(msg)
    if not name:
        msg = f"{what} path must not be empty ('-' means standard input or output)"
        raise ValueError(msg)
    return name


def check_poll(poll: timedelta | float) -> float:
    """``poll`` (a ``timedelta`` or seconds, > 0) in seconds."""
    return duration_seconds(poll, "poll")


def check_clock(clock: object) -> Clock:
    """``clock``, or the system clock for ``None``."""
    if clock is None:
        return SYSTEM_CLOCK
    if isinstance(clock, type) or not isinstance(clock, Clock):
        msg = (
            "clock must be a Clock (monotonic(), now() and async sleep()), such as "
            f"SystemClock() or VirtualClock(), got {clock!r:.60}"
        )
        raise TypeError(msg)
    return clock


def check_directory(name: str, what: str) -> None:
    """Raise if the file ``name`` cannot be created for want of its directory."""
    if name == STDIO:
        return
    if os.path.isdir(name):
        msg = f"{what}: {name!r} is a directory, not a file"
        raise IsADirectoryError(msg)
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(directory):
        msg = f"{what}: the directory {directory!r} of {name!r} does not exist"
        raise FileNotFoundError(msg)


class Output:
    """A file written a list at a time: opened for appending at the first write.

    ``"-"`` is standard output, written from a worker thread and never closed.
    """

    __slots__ = ("_file", "_fsync", "_name", "closed", "what")

    def __init__(self, name: str, what: str, *, fsync: bool) -> None:
        self._name = name
        self.what = what
        self._fsync = fsync
        self._file: Any = None
        self.closed = False

    def open(self) -> None:
        """Open the file for appending if it is not open yet."""
        if self.closed:
            msg = f"{self.what} is closed"
            raise RuntimeError(msg)
        if self._file is None:
            # Standard output may be replaced (captured): it is taken as it is now.
            self._file = sys.stdout if self._name == STDIO else open(self._name, "ab", buffering=0)  # noqa: SIM115  # closed in aclose(); a local open is quick

    async def write(self, data: bytes) -> None:
        """Write ``data``, flush it, and ``fsync`` it if asked; the file must be open."""
        file = self._file
        if self._name == STDIO:
            file.flush()  # what was printed before comes first
            await asyncio.to_thread(_write_stdout, file, data, self._fsync)
            return
        _append(file, data)
        if self._fsync:
            await asyncio.to_thread(os.fsync, file.fileno())

    def existing(self) -> IO[bytes] | None:
        """A reader of the file as it is, if it exists and is not empty."""
        if self._name == STDIO:
            return None
        try:
            file = open(self._name, "rb")  # noqa: SIM115  # the caller closes it
        except FileNotFoundError:
            return None
        if os.fstat(file.fileno()).st_size == 0:
            file.close()
            return None
        return file

    def aclose(self) -> None:
        """Close the file (standard output is only flushed)."""
        self.closed = True
        file, self._file = self._file, None
        if file is None:
            return
        if self._name == STDIO:
            file.flush()
        else:
            file.close()


def _append(file: Any, data: bytes) -> None:
    """Append ``data`` to ``file`` (unbuffered), all of it or, if that fails,
    none of it: a write that fails part way is cut off again, so that a retry
    does not follow a partial line."""
    fd = file.fileno()
    size = os.fstat(fd).st_size
    view = memoryview(data)
    try:
        while view:
            view = view[file.write(view) :]
    except BaseException:
        try:
            os.ftruncate(fd, size)
        except OSError:
            pass  # what was written stays; the failure goes on regardless
        raise


def _write_stdout(text: Any, data: bytes, fsync: bool) -> None:
    out = getattr(text, "buffer", None)
    if out is None:  # a text-only replacement of sys.stdout
        text.write(data.decode())
        text.flush()
        return
    out.write(data)
    out.flush()
    if fsync:
        try:
            os.fsync(out.fileno())
        except (OSError, ValueError):
            pass  # a pipe or terminal has nothing to sync
