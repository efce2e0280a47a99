"""``MODULE:ATTR``: the pipeline ``pipeflow run`` runs, found the way ``python -m`` would."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

__all__ = ["LoadError", "load_pipeline"]

EXAMPLE = "jobs.orders:pipeline"


class LoadError(ValueError):
    """``MODULE:ATTR`` names no pipeline: no such module or attribute, or not a pipeline.

    The message says which, and what was expected. An exception raised by the
    module's own code while it was imported is its ``__cause__``.
    """


def load_pipeline(target: str) -> Any:
    """The pipeline ``target`` (``MODULE:ATTR``) names.

    The current directory comes first on ``sys.path``, as for ``python -m``.
    ``ATTR`` may be dotted (``jobs:pipelines.orders``). It names a pipe or a
    pipeline (anything with ``run(source, sink)``), or a function of no arguments
    that returns one.

    Raises:
        LoadError: if the module or attribute is missing, importing the module
            or calling the function fails, or what is found is not a pipeline.
    """
    module_name, colon, attr = target.partition(":")
    if not (colon and module_name and attr):
        msg = f"expected MODULE:ATTR (for example {EXAMPLE}), got {target!r}"
        raise LoadError(msg)
    module = _import(module_name)
    found: Any = module
    for i, part in enumerate(attr.split(".")):
        if not hasattr(found, part):
            where = module_name if i == 0 else f"{module_name}:{'.'.join(attr.split('.')[:i])}"
            raise LoadError(_missing(where, part, found))
        found = getattr(found, part)
    if is_pipeline(found):
        return found
    if not callable(found):
        raise LoadError(_not_a_pipeline(target, found))
    return _call(target, found)


def is_pipeline(obj: object) -> bool:
    """Whether ``obj`` runs like a pipe: an instance with a callable ``run``."""
    return not isinstance(obj, type) and callable(getattr(obj, "run", None))


def _import(name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            msg = (
                f"no module named {exc.name!r} (looked in the current directory {cwd} "
                "and on sys.path)"
            )
            raise LoadError(msg) from None
        msg = f"importing module {name!r} failed: {type(exc).__name__}: {exc}"
        raise LoadError(msg) from exc
    except Exception as exc:
        msg = f"importing module {name!r} failed: {type(exc).__name__}: {exc}"
        raise LoadError(msg) from exc


def _call(target: str, fn: Any) -> Any:
    try:
        inspect.signature(fn).bind()
    except TypeError:
        msg = (
            f"{target} is a function that takes arguments; expected a pipeline, "
            "or a function of no arguments that returns one"
        )
        raise LoadError(msg) from None
    except ValueError:
        pass  # no signature to read (a builtin): call it and see
    try:
        made = fn()
    except Exception as exc:
        msg = f"calling {target}() failed: {type(exc).__name__}: {exc}"
        raise LoadError(msg) from exc
    if not is_pipeline(made):
        msg = f"{target}() returned {_kind(made)}, not a pipeline: " + _EXPECTED
        raise LoadError(msg)
    return made


_EXPECTED = "expected a pipe or pipeline (an object with .run(source, sink))"


def _not_a_pipeline(target: str, obj: object) -> str:
    return f"{target} is {_kind(obj)}, not a pipeline: {_EXPECTED}, or a function returning one"


def _missing(where: str, name: str, holder: object) -> str:
    pipelines = (
        sorted(n for n, v in vars(holder).items() if not n.startswith("_") and is_pipeline(v))
        if hasattr(holder, "__dict__")
        else []
    )
    hint = f"; its pipelines: {', '.join(pipelines)}" if pipelines else ""
    return f"{where} has no attribute {name!r}{hint}"


def _kind(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    name = type(obj).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name} ({_short(obj)})"


def _short(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."
