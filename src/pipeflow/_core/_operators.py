"""Operators from plain functions: ``map``, ``filter``, ``flat_map``.

Each takes a sync or an async function (``async def``) and returns a pipe;
``concurrency > 1`` takes an async one only (a sync function's calls could only
run one at a time, on the event loop's thread).
Adjacent ``map`` and ``filter`` operators with sync functions run fused, as one
compiled loop (see ``_fusion``); ``FunctionPipe._fused_op`` says which may.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

if sys.version_info >= (3, 13):
    from typing import TypeVar
else:  # TypeVar defaults (PEP 696)
    from typing_extensions import TypeVar

from ._pipe import StreamPipe
from ._stages import Kind, StageContext, flat_stage, paced, sync_stage

if TYPE_CHECKING:
    from ._buffer import Chunk
    from ._config import BackpressureConfig
    from ._policies import ErrorPolicy
    from ._stage import FusedOp

__all__ = ["FunctionPipe", "filter", "flat_map", "map"]

A = TypeVar("A", default=Any)
B = TypeVar("B", default=Any)


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


class FunctionPipe(StreamPipe[A, B]):
    """A pipe applying a plain function; built by ``map``, ``filter`` and ``flat_map``.

    Build it with those functions rather than directly. It is a ``StreamPipe``,
    so it composes, streams and takes a monitor like any other pipe.

    Attributes:
        fn: the function.
        is_async: whether ``fn`` is awaited: an ``async def``, an object whose
            ``__call__`` is one, or a ``functools.partial`` of either.
    """

    def __init__(
        self,
        fn: Callable[[A], Any],
        kind: Kind,
        *,
        config: BackpressureConfig | None = None,
        concurrency: int = 1,
        ordered: bool = True,
        on_error: ErrorPolicy = "raise",
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            msg = f"{kind.value}() takes a function, got {type(fn).__name__}: {fn!r:.60}"
            raise TypeError(msg)
        super().__init__(
            config=config,
            concurrency=concurrency,
            ordered=ordered,
            on_error=on_error,
            name=f"{kind.value}({_fn_name(fn)})" if name is None else name,
        )
        self.fn = fn
        self.kind = kind
        self.is_async = _is(inspect.iscoroutinefunction, fn)
        #: An async generator function's results are collected item by item.
        self._item_path = self.is_async or _is(inspect.isasyncgenfunction, fn)
        if self.concurrency > 1 and not self._item_path:
            raise _sync_with_concurrency(self.name, fn, self.concurrency)

    def _fused_op(self) -> FusedOp | None:
        """``(fn, kind)`` for a sync ``map`` or ``filter`` with no buffer, no
        concurrency and no overridden ``process_stream``: it may run inside a
        fused loop with its neighbours."""
        if (
            self._item_path
            or self.kind is Kind.FLAT
            or self.concurrency != 1
            or self.config is not None
            or self._overrides_process_stream()
        ):
            return None
        return self.fn, self.kind

    async def process_item(self, item: A) -> B:
        """Apply the function to one item as ``map`` would (``filter`` keeps or not)."""
        result = self.fn(item)
        if self.is_async:
            result = await result
        out: B = result
        return out

    def _open(self, up: AsyncIterator[Chunk], ctx: StageContext) -> AsyncIterator[Chunk]:
        if self.kind is Kind.FLAT and self.concurrency == 1:
            if ctx.config.min_processing_time > 0:
                fn = self.fn if self.is_async else _as_async(self.fn)
                call = paced(fn, ctx.config.min_processing_time, ctx.clock)
                return flat_stage(call, up, ctx, awaits=True)
            return flat_stage(self.fn, up, ctx, awaits=self.is_async)
        if self.is_async:
            return self._open_items(self.fn, self.kind, up, ctx)
        if not self._item_path and self.concurrency == 1 and ctx.config.min_processing_time == 0:
            return sync_stage(self.fn, self.kind, up, ctx)
        return self._open_items(_as_async(self.fn), self.kind, up, ctx)


def _sync_with_concurrency(pipe: str, fn: Callable[..., Any], concurrency: int) -> ValueError:
    """The error for a sync function given ``concurrency > 1``: its calls would run
    one at a time on the event loop's thread, and a blocking one would stall the loop."""
    name = _fn_name(fn)
    return ValueError(
        f"pipe {pipe!r}: concurrency={concurrency} needs an async function (async def), "
        f"but {name!r} is a sync function, whose calls run one at a time on the event "
        f"loop's thread; pass an async function, e.g. one that awaits "
        f"asyncio.to_thread({name}, item) for a blocking call, or use concurrency=1"
    )


def _is(test: Callable[[Any], bool], fn: Callable[..., Any]) -> bool:
    """Whether ``fn``, or the ``__call__`` of a callable object, passes ``test``
    (``inspect.iscoroutinefunction`` or ``isasyncgenfunction``); a
    ``functools.partial`` is judged by the callable it wraps."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if test(fn):
        return True
    if inspect.isroutine(fn) or isinstance(fn, type):
        return False
    return test(type(fn).__call__)


def _as_async(fn: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    async def call(item: Any) -> Any:
        return fn(item)

    return call


@overload
def map(
    fn: Callable[[A], Awaitable[B]],
    *,
    config: BackpressureConfig | None = ...,
    concurrency: int = ...,
    ordered: bool = ...,
    on_error: ErrorPolicy = ...,
    name: str | None = ...,
) -> FunctionPipe[A, B]: ...
@overload
def map(
    fn: Callable[[A], B],
    *,
    config: BackpressureConfig | None = ...,
    concurrency: int = ...,
    ordered: bool = ...,
    on_error: ErrorPolicy = ...,
    name: str | None = ...,
) -> FunctionPipe[A, B]: ...
def map(
    fn: Callable[[A], Any],
    *,
    config: BackpressureConfig | None = None,
    concurrency: int = 1,
    ordered: bool = True,
    on_error: ErrorPolicy = "raise",
    name: str | None = None,
) -> FunctionPipe[A, Any]:
    """A pipe emitting ``fn(item)`` for each item.

    ``fn`` is awaited if it is an ``async def``, an object whose ``__call__`` is
    one, or a ``functools.partial`` of either. A sync function, or a lambda that
    returns a coroutine, is not awaited: write it as ``async def``. Adjacent
    ``map`` and ``filter`` pipes with sync functions, no ``config`` and
    ``concurrency=1`` run fused, in one loop.

    Args:
        fn: the function, called once per item (see above for what counts as async).
        config: a ``BackpressureConfig``: a bounded input buffer for this pipe.
        concurrency: how many calls may be in flight at once; more than 1 needs
            an async ``fn``.
        ordered: with ``concurrency > 1``, emit results in input order (default)
            or as they complete.
        on_error: the error policy for items whose call fails.
        name: the name in errors, metrics and logs; ``map(<fn name>)`` by default.

    Raises:
        TypeError: if ``fn`` is not callable, or an option has the wrong type.
        ValueError: for a sync ``fn`` with ``concurrency > 1`` (its calls would
            run one at a time on the event loop's thread), or an invalid option.

    Examples:
        >>> from pipeflow import streams as ps
        >>> double = ps.map(lambda x: x * 2)
        >>> double.name
        'map(<lambda>)'
    """
    return FunctionPipe(
        fn,
        Kind.MAP,
        config=config,
        concurrency=concurrency,
        ordered=ordered,
        on_error=on_error,
        name=name,
    )


def filter(
    fn: Callable[[A], Any],
    *,
    config: BackpressureConfig | None = None,
    concurrency: int = 1,
    ordered: bool = True,
    on_error: ErrorPolicy = "raise",
    name: str | None = None,
) -> FunctionPipe[A, A]:
    """A pipe emitting the items for which ``fn(item)`` is true.

    ``fn`` is awaited if it is async, as for ``map``. A result without a truth
    value (a numpy array, say) fails the item, as an exception would.

    Args:
        fn: the function, called once per item (see above for what counts as async).
        config: a ``BackpressureConfig``: a bounded input buffer for this pipe.
        concurrency: how many calls may be in flight at once; more than 1 needs
            an async ``fn``.
        ordered: with ``concurrency > 1``, emit results in input order (default)
            or as they complete.
        on_error: the error policy for items whose call fails.
        name: the name in errors, metrics and logs; ``filter(<fn name>)`` by default.

    Raises:
        TypeError: if ``fn`` is not callable, or an option has the wrong type.
        ValueError: for a sync ``fn`` with ``concurrency > 1`` (its calls would
            run one at a time on the event loop's thread), or an invalid option.

    Examples:
        >>> from pipeflow import streams as ps
        >>> evens = ps.filter(lambda x: x % 2 == 0)
    """
    return FunctionPipe(
        fn,
        Kind.FILTER,
        config=config,
        concurrency=concurrency,
        ordered=ordered,
        on_error=on_error,
        name=name,
    )


def flat_map(
    fn: Callable[[A], Iterable[B] | AsyncIterable[B] | Awaitable[Iterable[B]]],
    *,
    config: BackpressureConfig | None = None,
    concurrency: int = 1,
    ordered: bool = True,
    on_error: ErrorPolicy = "raise",
    name: str | None = None,
) -> FunctionPipe[A, B]:
    """A pipe emitting every element of ``fn(item)``.

    ``fn`` returns an iterable or an async iterable (an async generator function
    works), or, for an ``async def``, is awaited for an iterable. At
    ``concurrency=1`` the elements go on as they come, at most ``MAX_CHUNK`` at a
    time, so a long or endless expansion is never held whole; with more, each
    call's elements are collected first and go on together. If an expansion fails
    part-way, the elements already emitted stay emitted and the error policy
    handles the item (a ``Retry`` emits every element of the new attempt).

    Args:
        fn: the function, called once per item (see above for what counts as async).
        config: a ``BackpressureConfig``: a bounded input buffer for this pipe.
        concurrency: how many calls may be in flight at once; more than 1 needs
            an async ``fn``.
        ordered: with ``concurrency > 1``, emit results in input order (default)
            or as they complete.
        on_error: the error policy for items whose call fails.
        name: the name in errors, metrics and logs; ``flat_map(<fn name>)`` by default.

    Raises:
        TypeError: if ``fn`` is not callable, or an option has the wrong type.
        ValueError: for a sync ``fn`` with ``concurrency > 1`` (its calls would
            run one at a time on the event loop's thread), or an invalid option.

    Examples:
        >>> from pipeflow import streams as ps
        >>> words = ps.flat_map(str.split)
    """
    return FunctionPipe(
        fn,
        Kind.FLAT,
        config=config,
        concurrency=concurrency,
        ordered=ordered,
        on_error=on_error,
        name=name,
    )
