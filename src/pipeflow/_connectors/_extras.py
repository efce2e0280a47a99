"""Optional dependencies: each broker's client is an extra, imported only where used."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

DISTRIBUTION = "pipeflow-streams"


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise an ``ImportError`` naming the command that installs it.

    Args:
        module: the module to import (``"redis.asyncio"``).
        extra: the extra that brings it (``"redis"``).
        what: what needs it, for the message (``"RedisStreamSource"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = (
            f"{what} needs the {extra!r} extra, which is not installed: "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )
        raise ImportError(msg, name=exc.name) from exc
