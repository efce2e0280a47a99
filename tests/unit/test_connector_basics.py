"""What every connector builds on: messages, codecs, positions, reconnecting, extras."""

from __future__ import annotations

import asyncio
import logging
import pickle
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeflow import streams as ps
from pipeflow._connectors._checks import check_unread
from pipeflow._connectors._codecs import codec_for, decode_message, encode_result
from pipeflow._connectors._extras import require
from pipeflow._connectors._positions import Positions
from pipeflow._connectors._reconnect import check_reconnect, reconnecting
from pipeflow.connectors import (
    DecodeError,
    EncodeError,
    JsonCodec,
    Message,
    RawCodec,
    TextCodec,
    UndecodableMessage,
)
from pipeflow.testing import TestSource, VirtualClock

JSON = JsonCodec()


# Messages


def test_a_message_defaults_and_repr() -> None:
    msg = Message({"id": 1}, source="orders", position=7)
    assert (None, {}, None, 0, None) == (
        msg.key,
        msg.headers,
        msg.timestamp,
        msg.partition,
        msg.raw,
    )
    assert "Message({'id': 1}, source='orders', partition=0, position=7)" == repr(msg)
    stamped = Message(1, key=b"k", timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    assert "key=b'k'" in repr(stamped)
    assert "timestamp=2026-01-01T00:00:00+00:00" in repr(stamped)


def test_replace_keeps_the_other_fields() -> None:
    msg = Message(1, key=b"k", headers={"h": "v"}, source="s", partition=2, position=9)
    changed = msg.replace(value=2)
    assert Message(2, key=b"k", headers={"h": "v"}, source="s", partition=2, position=9) == changed
    assert 1 == msg.value
    with pytest.raises(TypeError, match=r"unknown field\(s\) \['vlaue'\]"):
        msg.replace(vlaue=3)


def test_messages_compare_by_value_and_are_unhashable() -> None:
    assert Message(1, position=1) == Message(1, position=1)
    assert Message(1, position=1) != Message(1, position=2)
    with pytest.raises(TypeError):
        hash(Message(1))


def test_an_undecodable_payload_becomes_a_message_that_raises_on_value() -> None:
    msg = decode_message(JSON, b"{oops", source="orders", partition=1, position=41)
    assert isinstance(msg, UndecodableMessage)
    assert isinstance(msg, Message)
    assert b"{oops" == msg.raw
    assert (1, 41, "orders[1]@41") == (msg.partition, msg.position, msg.where)
    with pytest.raises(DecodeError, match=r"orders\[1\]@41 with the 'json' codec") as info:
        _ = msg.value
    assert isinstance(info.value, ValueError)
    assert b"{oops" == info.value.raw
    assert "UndecodableMessage(raw=b'{oops', codec='json'" in repr(msg)
    with pytest.raises(DecodeError):
        msg.replace(position=1)
    fixed = msg.replace(value={"fixed": True})
    assert type(fixed) is Message
    assert (41, {"fixed": True}) == (fixed.position, fixed.value)


def test_decode_error_pickles() -> None:
    msg = decode_message(JSON, b"[", position=1)
    assert isinstance(msg, UndecodableMessage)
    try:
        _ = msg.value
    except DecodeError as exc:
        copy = pickle.loads(pickle.dumps(exc))
        assert (b"[", "json") == (copy.raw, copy.codec)


async def test_a_bad_payload_goes_to_the_first_pipes_policy_and_is_acknowledged() -> None:
    payloads = [b'{"x": 1}', b"{not json", b'{"x": 3}', b"\xff"]
    messages = [decode_message(JSON, p, source="in", position=n) for n, p in enumerate(payloads)]
    source = TestSource(messages)
    dead: list[ps.StreamError] = []
    out: list[int] = []
    pipe = ps.map(lambda m: m.value["x"], on_error=ps.DeadLetter(dead.append))
    summary = await pipe.run(source, out)
    assert [1, 3] == out
    assert [1, 3] == [e.item.position for e in dead]
    assert all(isinstance(e.__cause__, DecodeError) for e in dead)
    assert 2 == summary.dead_lettered
    assert 4 == source.acked

    skipping = TestSource(messages)
    summary = await ps.map(lambda m: m.value["x"], on_error="skip").run(skipping, [])
    assert (2, 4) == (summary.skipped, skipping.acked)


async def test_under_raise_a_bad_payload_stops_the_run_unacknowledged() -> None:
    messages = [decode_message(JSON, p, position=n) for n, p in enumerate([b"1", b"x", b"3"])]
    source = TestSource(messages)
    out: list[int] = []
    with pytest.raises(ps.StreamError) as info:
        await ps.map(lambda m: m.value).run(source, out)
    assert 1 == info.value.item.position
    assert [1] == out
    assert source.acked <= 1


# Codecs


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_json_round_trips(value: Any) -> None:
    assert value == JSON.decode(JSON.encode(value))


def test_json_encodes_datetimes_dataclasses_and_non_string_keys() -> None:
    @dataclass
    class Point:
        x: int

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert b'{"1":"2026-01-02T03:04:05+00:00"}' == JSON.encode({1: when})
    assert b'{"x":1}' == JSON.encode(Point(1))


def test_text_and_raw() -> None:
    assert "é" == TextCodec().decode(TextCodec().encode("é"))
    with pytest.raises(TypeError, match="the text codec encodes str, got int"):
        TextCodec().encode(1)
    assert b"\x00" == RawCodec().encode(bytearray(b"\x00"))
    with pytest.raises(TypeError, match="the raw codec encodes bytes, got str"):
        RawCodec().encode("x")


def test_codec_for_names_what_it_takes() -> None:
    assert isinstance(codec_for("json"), JsonCodec)
    custom = RawCodec()
    assert custom is codec_for(custom)
    with pytest.raises(ValueError, match=r"codec must be one of \['json', 'raw', 'text'\]"):
        codec_for("yaml")
    with pytest.raises(TypeError, match="not the class JsonCodec"):
        codec_for(JsonCodec)
    with pytest.raises(TypeError, match=r"encode\(value\) -> bytes"):
        codec_for(42, "value_codec")


def test_encode_result_takes_a_message_by_its_value() -> None:
    assert b"[1]" == encode_result(JSON, Message([1], key=b"k"))
    assert b"[1]" == encode_result(JSON, [1])
    undecodable = decode_message(JSON, b"{raw", position=3)
    assert b"{raw" == encode_result(JSON, undecodable)
    with pytest.raises(EncodeError, match=r"the 'json' codec cannot encode the result") as info:
        encode_result(JSON, {1j})
    assert isinstance(info.value, TypeError)


async def test_a_result_that_cannot_be_encoded_fails_the_run_without_retries() -> None:
    class Sink:
        attempts = 0

        async def write(self, items: list[Any]) -> None:
            self.attempts += 1
            for item in items:
                encode_result(JSON, item)

        async def aclose(self) -> None:
            pass

    sink = Sink()
    source = TestSource([1, object()])
    with pytest.raises(EncodeError):
        await ps.map(lambda x: x).run(source, sink)
    assert 1 == sink.attempts
    assert 0 == source.acked


# Positions


def test_positions_turn_counts_into_what_they_newly_cover() -> None:
    positions: Positions[str] = Positions()
    positions.extend(["a", "b", "c"])
    positions.append("d")
    assert ["a", "b"] == positions.take(2)
    assert [] == positions.take(2)
    assert [] == positions.take(1)
    assert ["c", "d"] == positions.take(4)
    assert (4, 0) == (positions.acked, len(positions))
    with pytest.raises(ValueError, match="acknowledged 5 items, but only 4 were handed over"):
        positions.take(5)


@given(st.lists(st.integers(0, 5), max_size=30))
def test_positions_hand_out_each_position_once_in_order(steps: list[int]) -> None:
    positions: Positions[int] = Positions()
    positions.extend(range(sum(steps)))
    count, taken = 0, []
    for step in steps:
        count += step
        taken += positions.take(count)
    assert list(range(sum(steps))) == taken


# Reconnecting


async def test_reconnecting_retries_a_lost_connection_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    calls: list[str] = []

    async def fetch() -> str:
        calls.append("fetch")
        if calls.count("fetch") < 3:
            raise ConnectionResetError("gone")
        return "ok"

    async def reconnect() -> None:
        calls.append("reconnect")

    retry = ps.Retry(attempts=5, backoff=1.0, jitter=0)
    with caplog.at_level(logging.WARNING, "pipeflow.connectors"):
        got = await reconnecting(
            fetch,
            retry=retry,
            lost=(ConnectionError,),
            what="reading orders",
            clock=clock,
            before_retry=reconnect,
        )
    assert "ok" == got
    assert ["fetch", "reconnect", "fetch", "reconnect", "fetch"] == calls
    assert 3.0 == clock.monotonic()  # waited 1 s, then 2 s
    warned = [r for r in caplog.records if "reading orders failed" in r.message]
    assert 2 == len(warned)
    assert "(ConnectionResetError: gone); trying again" in warned[0].message


async def test_reconnecting_gives_up_with_a_note() -> None:
    clock = VirtualClock()

    async def fetch() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError) as info:
        await reconnecting(
            fetch,
            retry=ps.Retry(attempts=3, backoff=0.5, jitter=0),
            lost=(OSError,),
            what="connecting to redis://x",
            clock=clock,
        )
    assert "pipeflow: connecting to redis://x failed after 3 attempts" in info.value.__notes__


async def test_reconnecting_lets_other_failures_through_at_once() -> None:
    calls = 0

    async def fetch() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("not a connection problem")

    with pytest.raises(KeyError):
        await reconnecting(fetch, retry=ps.Retry(), lost=(OSError,), what="x")
    assert 1 == calls


def test_check_reconnect() -> None:
    with pytest.raises(TypeError, match="reconnect must be a Retry, got int"):
        check_reconnect(3)
    with pytest.raises(ValueError, match="then='raise'"):
        check_reconnect(ps.Retry(then="skip"))


# Extras


def test_a_missing_extra_names_the_command_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'pipeflow-streams\[redis\]'") as info:
        require("redis", "redis", "RedisStreamSource")
    assert "RedisStreamSource needs the 'redis' extra" in str(info.value)
    assert asyncio is require("asyncio", "none", "x")


def test_a_broker_source_is_read_once_and_not_after_it_is_closed() -> None:
    """Every broker source refuses a second iteration, and one after ``aclose()``,
    with the same words."""
    check_unread("src", read=False, closed=False)
    with pytest.raises(RuntimeError, match=r"^'src' can be iterated once; make a new one"):
        check_unread("src", read=True, closed=True)
    with pytest.raises(RuntimeError, match=r"^'src' is closed$"):
        check_unread("src", read=False, closed=True)
