"""Source and sink URLs of ``pipeflow run``: each scheme to its connector spec, every
error naming the URL, what is wrong and the form expected."""

from __future__ import annotations

import pytest

from pipeflow._cli._urls import ConnectorSpec, UrlError, build, parse_sink, parse_source


def spec(kind: str, *args: object, **kwargs: object) -> ConnectorSpec:
    return ConnectorSpec(kind, args, tuple(kwargs.items()))


# Redis


def test_redis_source_takes_stream_and_group_and_passes_the_url_without_query() -> None:
    """The query goes into arguments; the connection URL keeps host, port and database."""
    expected = spec("RedisStreamSource", "redis://h:6379/0", "orders", group="etl")
    assert expected == parse_source("redis://h:6379/0?stream=orders&group=etl")


def test_redis_source_takes_every_option_typed() -> None:
    """Numbers and seconds are converted; the keyword order is fixed, not the URL's."""
    url = (
        "redis://h:6379/2?codec=text&field=body&claim_idle=60&block=0.5&batch_size=100"
        "&consumer=c1&group=g&stream=s"
    )
    expected = spec(
        "RedisStreamSource",
        "redis://h:6379/2",
        "s",
        group="g",
        consumer="c1",
        batch_size=100,
        block=0.5,
        claim_idle=60.0,
        field="body",
        codec="text",
    )
    assert expected == parse_source(url)


def test_redis_source_with_stop_at_end() -> None:
    """--stop-at-end becomes stop_at_end=True for a broker source."""
    expected = spec("RedisStreamSource", "redis://h:6379/0", "s", group="g", stop_at_end=True)
    assert expected == parse_source("redis://h:6379/0?stream=s&group=g", stop_at_end=True)


def test_rediss_and_credentials_are_kept_in_the_connection_url() -> None:
    """TLS (rediss) and a password stay in the URL the connector connects with."""
    expected = spec("RedisStreamSink", "rediss://u:pw@h:6380", "s", maxlen=1000)
    assert expected == parse_sink("rediss://u:pw@h:6380?stream=s&maxlen=1000")


def test_redis_sink_takes_maxlen_field_and_codec() -> None:
    """A sink needs only the stream."""
    expected = spec(
        "RedisStreamSink",
        "redis://h:6379/0",
        "s",
        maxlen=5,
        approximate=False,
        field="f",
        codec="raw",
    )
    url = "redis://h:6379/0?stream=s&approximate=false&maxlen=5&field=f&codec=raw"
    assert expected == parse_sink(url)


def test_a_redis_sink_has_no_group() -> None:
    """A source's parameter on a sink is unknown, and the known ones are listed."""
    with pytest.raises(UrlError) as caught:
        parse_sink("redis://h:6379/0?stream=s&group=g")
    assert (
        "'redis://h:6379/0?stream=s&group=g': unknown query parameter 'group' for a redis sink "
        "(known: approximate, codec, field, maxlen, stream); expected "
        "redis://HOST:PORT/DB?stream=STREAM[&maxlen=N&approximate=BOOL&field=F&codec=C]"
    ) == str(caught.value)


# NATS


def test_nats_source_takes_subject_stream_and_durable() -> None:
    """The subject is positional; stream and durable are keywords."""
    expected = spec(
        "NatsSource",
        "nats://h:4222",
        "orders.new",
        stream="ORDERS",
        durable="etl",
        batch_size=10,
        ack_wait=5.0,
        codec="json",
    )
    url = "nats://h:4222?subject=orders.new&stream=ORDERS&durable=etl&batch_size=10&ack_wait=5&codec=json"
    assert expected == parse_source(url)


def test_nats_source_with_stop_at_end() -> None:
    """--stop-at-end applies to NATS too."""
    expected = spec("NatsSource", "nats://h:4222", "x", stream="S", durable="d", stop_at_end=True)
    assert expected == parse_source("nats://h:4222/?subject=x&stream=S&durable=d", stop_at_end=True)


def test_nats_sink_takes_subject() -> None:
    """A sink publishes to a subject."""
    assert spec("NatsSink", "nats://h:4222", "out") == parse_sink("nats://h:4222?subject=out")


def test_nats_fetch_timeout_and_max_in_flight() -> None:
    """A source's fetch timeout in seconds; a sink's cap on publishes awaiting acks."""
    url = "nats://h:4222?subject=x&stream=S&durable=d&fetch_timeout=0.25"
    expected = spec("NatsSource", "nats://h:4222", "x", stream="S", durable="d", fetch_timeout=0.25)
    assert expected == parse_source(url)
    expected = spec("NatsSink", "nats://h:4222", "out", max_in_flight=64)
    assert expected == parse_sink("nats://h:4222?subject=out&max_in_flight=64")


# Kafka


def test_kafka_source_takes_servers_topic_and_group() -> None:
    """Several bootstrap servers are given comma-separated, as the client takes them."""
    expected = spec("KafkaSource", "k1:9092,k2:9093", "orders", group="etl", batch_size=50)
    assert expected == parse_source("kafka://k1:9092,k2:9093/orders?group=etl&batch_size=50")


def test_kafka_source_with_stop_at_end() -> None:
    """--stop-at-end applies to Kafka too."""
    expected = spec("KafkaSource", "k:9092", "t", group="g", stop_at_end=True)
    assert expected == parse_source("kafka://k:9092/t?group=g", stop_at_end=True)


def test_kafka_sink_takes_servers_and_topic() -> None:
    """A sink needs no group."""
    expected = spec("KafkaSink", "k:9092", "out", codec="text", timeout=5.0)
    assert expected == parse_sink("kafka://k:9092/out?timeout=5&codec=text")


def test_kafka_source_timings_and_offset_reset() -> None:
    """Session timeout and commit interval in seconds; where a new group starts."""
    url = "kafka://k:9092/t?group=g&auto_offset_reset=latest&session_timeout=20&commit_interval=0.2"
    expected = spec(
        "KafkaSource",
        "k:9092",
        "t",
        group="g",
        session_timeout=20.0,
        auto_offset_reset="latest",
        commit_interval=0.2,
    )
    assert expected == parse_source(url)


# Files and standard streams


def test_file_urls_relative_and_absolute() -> None:
    """file:PATH is relative to the current directory, file:///PATH absolute."""
    assert spec("JsonLinesSource", "in.jsonl") == parse_source("file:in.jsonl")
    assert spec("JsonLinesSink", "/data/out.jsonl") == parse_sink("file:///data/out.jsonl")
    assert spec("JsonLinesSink", "/d/o.jsonl") == parse_sink("file://localhost/d/o.jsonl")
    assert spec("JsonLinesSource", "dir/a b.jsonl") == parse_source("file:dir/a%20b.jsonl")


def test_file_follow_and_codec() -> None:
    """follow= takes true or false in the usual spellings."""
    expected = spec("JsonLinesSource", "in.jsonl", follow=True, codec="text")
    assert expected == parse_source("file:in.jsonl?follow=true&codec=text")
    assert spec("JsonLinesSource", "in.jsonl", follow=False) == parse_source(
        "file:in.jsonl?follow=no"
    )


def test_file_poll_and_fsync() -> None:
    """A followed file is polled every poll= seconds; a sink may fsync each write."""
    expected = spec("JsonLinesSource", "in.jsonl", follow=True, poll=0.5)
    assert expected == parse_source("file:in.jsonl?poll=0.5&follow=true")
    assert spec("JsonLinesSink", "o.jsonl", fsync=True) == parse_sink("file:o.jsonl?fsync=yes")


def test_csv_files() -> None:
    """A .csv file is read and written as CSV, with a delimiter of choice."""
    assert spec("CsvSource", "in.CSV", follow=True) == parse_source("file:in.CSV?follow=1")
    assert spec("CsvSink", "/out.csv") == parse_sink("file:///out.csv")
    expected = spec("CsvSource", "in.csv", delimiter="\t")
    assert expected == parse_source("file:in.csv?delimiter=%09")
    assert spec("CsvSink", "o.csv", delimiter=";") == parse_sink("file:o.csv?delimiter=;")


def test_a_dash_is_standard_input_or_output() -> None:
    """- reads JSON Lines from standard input and writes them to standard output."""
    assert spec("JsonLinesSource", "-") == parse_source("-")
    assert spec("JsonLinesSink", "-") == parse_sink("-")


def test_stop_at_end_is_no_change_for_a_file_read_to_its_end() -> None:
    """A file that is not followed ends at its end anyway."""
    assert spec("JsonLinesSource", "a.jsonl") == parse_source("file:a.jsonl", stop_at_end=True)


# Errors

BAD_SOURCES = [
    ("orders.jsonl", "no scheme (a file is written file:orders.jsonl)"),
    ("http://h/x", "unknown scheme 'http'"),
    ("", "no scheme"),
    ("redis://h:6379/0?stream=s", "missing group="),
    ("redis://h:6379/0", "missing stream=, group="),
    ("redis://h:6379/0?stream=s&group=g&maxlen=5", "unknown query parameter 'maxlen'"),
    ("redis://h:6379/0?stream=s&group=g&group=h", "query parameter 'group' given twice"),
    ("redis://h:6379/0?stream=s&group=", "query parameter 'group' has no value"),
    ("redis://h:6379/0?stream=s&group=g&batch_size=0", "batch_size must be a positive whole"),
    ("redis://h:6379/0?stream=s&group=g&batch_size=ten", "batch_size must be a positive whole"),
    ("redis://h:6379/0?stream=s&group=g&block=-1", "block must be a positive number of seconds"),
    ("redis://h:6379/0?stream=s&group=g&claim_idle=inf", "claim_idle must be a positive number"),
    ("redis://h:6379/0?stream=s&group=g&codec=xml", "codec must be one of json, text, raw"),
    ("redis://h:port/0?stream=s&group=g", "the port in 'h:port' is not a number"),
    ("redis:///0?stream=s&group=g", "no host"),
    ("redis://h:6379/zero?stream=s&group=g", "the database 'zero' is not a number"),
    ("redis://h:6379/0?stream=s&group=g#x", "a fragment (#x) means nothing here"),
    ("nats://h:4222?subject=x&stream=S", "missing durable="),
    ("nats://h:4222/x?subject=x&stream=S&durable=d", "a path ('/x') means nothing here"),
    ("nats://h:4222?subject=x&stream=S&durable=d&ack_wait=soon", "ack_wait must be a positive"),
    ("kafka://k:9092/t", "missing group="),
    ("kafka://k:9092/?group=g", "the path must be the topic"),
    ("kafka://k:9092/a/b?group=g", "the path must be the topic"),
    ("kafka:///t?group=g", "no broker address"),
    ("kafka://k/t?group=g", "the broker address 'k' is not HOST:PORT"),
    ("kafka://k:9092,j/t?group=g", "the broker address 'j' is not HOST:PORT"),
    ("kafka://u@k:9092/t?group=g", "credentials in a Kafka URL are not supported"),
    ("kafka://k:9092/t?group=g&auto_offset_reset=first", "must be earliest or latest, got 'first'"),
    ("file:in.jsonl?follow=maybe", "follow must be true or false, got 'maybe'"),
    (
        "file:in.csv?codec=json",
        "unknown query parameter 'codec' for a file source (known: delimiter, follow, poll)",
    ),
    ("file:in.csv?delimiter=ab", "delimiter must be one character (%09 for a tab), got 'ab'"),
    ("file:in.jsonl?delimiter=;", "unknown query parameter 'delimiter'"),
    ("file:in.jsonl?poll=0", "poll must be a positive number of seconds"),
    ("file://server/in.jsonl", "a file URL names no host ('server')"),
    ("file:", "no file name"),
    ("file:///data/", "no file name"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_SOURCES)
def test_bad_source_urls(url: str, problem: str) -> None:
    """Each error names the URL, then what is wrong, then the form expected."""
    with pytest.raises(UrlError) as caught:
        parse_source(url)
    message = str(caught.value)
    assert message.startswith(f"{url!r}: "), message
    assert problem in message
    assert "; expected " in message
    assert url == caught.value.url


def test_an_unknown_scheme_lists_every_form() -> None:
    """Without a scheme to go by, the error lists every form a source can take."""
    with pytest.raises(UrlError) as caught:
        parse_source("mqtt://h/t")
    expected = caught.value.expected
    for start in ("redis://", "nats://", "kafka://", "file:", "- (standard input or output)"):
        assert start in expected


BAD_SINKS = [
    ("redis://h:6379/0", "missing stream="),
    ("redis://h:6379/0?stream=s&maxlen=-3", "maxlen must be a positive whole number"),
    ("nats://h:4222", "missing subject="),
    ("nats://h:4222?subject=x&durable=d", "unknown query parameter 'durable'"),
    ("nats://h:4222?subject=x&max_in_flight=0", "max_in_flight must be a positive whole number"),
    (
        "kafka://k:9092/t?group=g",
        "unknown query parameter 'group' for a kafka sink (known: codec, timeout)",
    ),
    ("file:out.jsonl?follow=true", "unknown query parameter 'follow'"),
    ("file:out.csv?x=1", "unknown query parameter 'x' for a file sink (known: delimiter)"),
    ("file:out.csv?fsync=true", "unknown query parameter 'fsync'"),
    ("file:out.jsonl?fsync=sometimes", "fsync must be true or false"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_SINKS)
def test_bad_sink_urls(url: str, problem: str) -> None:
    """Sinks are checked the same way, against a sink's parameters."""
    with pytest.raises(UrlError) as caught:
        parse_sink(url)
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"{url!r}: ")


def test_stop_at_end_with_a_followed_file_is_an_error() -> None:
    """A followed file has no end to stop at."""
    with pytest.raises(UrlError, match=r"--stop-at-end is for broker sources"):
        parse_source("file:in.jsonl?follow=true", stop_at_end=True)


def test_a_password_is_not_shown_in_errors() -> None:
    """The URL in a message has its password replaced."""
    with pytest.raises(UrlError) as caught:
        parse_source("redis://user:secret@h:6379/0?stream=s")
    assert "secret" not in str(caught.value)
    assert "'redis://user:***@h:6379/0?stream=s': missing group=" in str(caught.value)


def test_build_names_a_connector_this_version_lacks() -> None:
    """A spec whose class is not in pipeflow.connectors fails with a LookupError."""
    with pytest.raises(LookupError, match=r"no NoSuchSource in pipeflow.connectors"):
        build(ConnectorSpec("NoSuchSource", ()))
