"""Source and sink URLs of ``pipeflow run``, parsed into connector specs.

A URL names a connector and its options::

    redis://HOST:PORT/DB?stream=S&group=G       RedisStreamSource / RedisStreamSink
    nats://HOST:PORT?subject=S&stream=N&durable=D   NatsSource / NatsSink
    kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=G  KafkaSource / KafkaSink
    file:PATH.jsonl, file:///ABS/PATH.csv       JsonLinesSource / CsvSource (and sinks)
    -                                           standard input / standard output

Parsing gives a ``ConnectorSpec``: the connector class's name in
``pipeflow.connectors`` and its constructor arguments, checked here (every query
parameter known, of the right type, none twice). ``build`` imports the class and
calls it. Nothing here imports a connector or a broker client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

__all__ = ["ConnectorSpec", "UrlError", "build", "parse_sink", "parse_source"]

Role = Literal["source", "sink"]

CODECS = ("json", "text", "raw")

#: The expected forms, one per scheme and role, for error messages and help.
FORMS: dict[tuple[str, Role], str] = {
    ("redis", "source"): (
        "redis://HOST:PORT/DB?stream=STREAM&group=GROUP"
        "[&consumer=NAME&batch_size=N&block=SECONDS&claim_idle=SECONDS&field=F&codec=C]"
    ),
    ("redis", "sink"): (
        "redis://HOST:PORT/DB?stream=STREAM[&maxlen=N&approximate=BOOL&field=F&codec=C]"
    ),
    ("nats", "source"): (
        "nats://HOST:PORT?subject=SUBJECT&stream=STREAM&durable=NAME"
        "[&batch_size=N&fetch_timeout=SECONDS&ack_wait=SECONDS&codec=C]"
    ),
    ("nats", "sink"): "nats://HOST:PORT?subject=SUBJECT[&codec=C&max_in_flight=N]",
    ("kafka", "source"): (
        "kafka://HOST:PORT[,HOST:PORT...]/TOPIC?group=GROUP[&batch_size=N"
        "&session_timeout=SECONDS&auto_offset_reset=earliest|latest&commit_interval=SECONDS"
        "&codec=C]"
    ),
    ("kafka", "sink"): "kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?codec=C&timeout=SECONDS]",
    ("file", "source"): (
        "file:PATH.jsonl or file:///ABSOLUTE/PATH.csv "
        "[?follow=BOOL&poll=SECONDS&codec=C (JSON Lines)&delimiter=CHAR (CSV)]"
    ),
    ("file", "sink"): (
        "file:PATH.jsonl or file:///ABSOLUTE/PATH.csv "
        "[?codec=C&fsync=BOOL (JSON Lines)&delimiter=CHAR (CSV)]"
    ),
}

SCHEMES = {"redis": "redis", "rediss": "redis", "nats": "nats", "kafka": "kafka", "file": "file"}


class UrlError(ValueError):
    """A source or sink URL that ``pipeflow run`` cannot use.

    The message names the URL (its password hidden), what is wrong with it and
    the form expected.

    Attributes:
        url: the URL as given.
        problem: what is wrong, in a few words.
        expected: the form expected, or the list of forms.
    """

    def __init__(self, url: str, problem: str, expected: str) -> None:
        self.url = url
        self.problem = problem
        self.expected = expected
        super().__init__(f"{_shown(url)!r}: {problem}; expected {expected}")


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    """A connector to build: its class in ``pipeflow.connectors`` and the arguments.

    Attributes:
        kind: the class's name (``"RedisStreamSource"``).
        args: the positional arguments (the URL or path, the stream or topic).
        options: the keyword arguments, as (name, value) pairs in a fixed order.
    """

    kind: str
    args: tuple[Any, ...]
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments as a dict."""
        return dict(self.options)


def parse_source(url: str, *, stop_at_end: bool = False) -> ConnectorSpec:
    """The source a URL names.

    Args:
        url: a source URL (see the module's docstring).
        stop_at_end: for a broker source, end after the messages there at the start.

    Raises:
        UrlError: for a URL of an unknown scheme, a missing or unknown parameter,
            or a value of the wrong type; for ``stop_at_end`` with a followed file.
    """
    spec = _parse(url, "source")
    if not stop_at_end:
        return spec
    if spec.kind in ("RedisStreamSource", "NatsSource", "KafkaSource"):
        return ConnectorSpec(spec.kind, spec.args, (*spec.options, ("stop_at_end", True)))
    if spec.kwargs.get("follow"):
        raise UrlError(
            url,
            "--stop-at-end is for broker sources, and this file is followed (follow=true)",
            "follow=false (the default: the run ends at the end of the file)",
        )
    return spec


def parse_sink(url: str) -> ConnectorSpec:
    """The sink a URL names.

    Raises:
        UrlError: as ``parse_source`` does.
    """
    return _parse(url, "sink")


def build(spec: ConnectorSpec) -> Any:
    """The connector ``spec`` describes, made by its class in ``pipeflow.connectors``.

    Raises:
        LookupError: if this version of pipeflow has no such connector.
        ImportError: if the connector's extra is not installed.
        TypeError, ValueError: if the connector rejects an option.
    """
    import pipeflow.connectors

    cls = getattr(pipeflow.connectors, spec.kind, None)
    if cls is None:
        msg = f"this version of pipeflow has no {spec.kind} in pipeflow.connectors"
        raise LookupError(msg)
    return cls(*spec.args, **spec.kwargs)


def all_forms(role: Role) -> str:
    """Every form a ``role`` URL can take, for an error about an unknown scheme."""
    forms = [form for (_, r), form in FORMS.items() if r == role]
    return "one of: " + "; ".join([*forms, "- (standard input or output)"])


def _parse(url: str, role: Role) -> ConnectorSpec:
    if url == "-":
        return ConnectorSpec("JsonLinesSource" if role == "source" else "JsonLinesSink", ("-",))
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        problem = f"unknown scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        if not parts.scheme and url:
            problem += f" (a file is written file:{url})"
        raise UrlError(url, problem, all_forms(role))
    if parts.fragment:
        raise UrlError(
            url, f"a fragment (#{parts.fragment}) means nothing here", FORMS[scheme, role]
        )
    parser = _PARSERS[scheme]
    return parser(
        _Url(url, parts.scheme.lower(), scheme, role, parts.netloc, parts.path, parts.query)
    )


@dataclass(frozen=True, slots=True)
class _Url:
    """A URL split up, with what it is for."""

    text: str
    scheme: str  # as written, lowercased (``rediss``)
    kind: str  # the family (``redis``)
    role: Role
    netloc: str
    path: str
    query: str

    def fail(self, problem: str) -> NoReturn:
        """Raise the ``UrlError`` for ``problem`` with this URL."""
        raise UrlError(self.text, problem, FORMS[self.kind, self.role]) from None

    def params(self, known: Mapping[str, _Convert], required: tuple[str, ...]) -> dict[str, Any]:
        """The query's parameters, converted; every one known, none twice, the required there."""
        found: dict[str, Any] = {}
        for name, value in parse_qsl(self.query, keep_blank_values=True, strict_parsing=False):
            if name not in known:
                names = ", ".join(sorted(known)) or "none"
                self.fail(
                    f"unknown query parameter {name!r} for a {self.kind} {self.role} "
                    f"(known: {names})"
                )
            if name in found:
                self.fail(f"query parameter {name!r} given twice")
            if not value:
                self.fail(f"query parameter {name!r} has no value")
            try:
                found[name] = known[name](name, value)
            except ValueError as exc:
                self.fail(str(exc))
        missing = [name for name in required if name not in found]
        if missing:
            self.fail("missing " + ", ".join(f"{name}=" for name in missing))
        return found

    def host_port(self) -> None:
        """Check the address: a host, and a port that is a number if there is one."""
        parts = urlsplit(self.text)
        if not parts.hostname:
            self.fail("no host")
        try:
            parts.port  # noqa: B018 (reading it checks it)
        except ValueError:
            self.fail(f"the port in {parts.netloc!r} is not a number from 0 to 65535")


_Convert = Callable[[str, str], Any]


def _text(name: str, value: str) -> str:
    return value


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        msg = f"{name} must be a positive whole number, got {value!r}"
        raise ValueError(msg)
    return number


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        msg = f"{name} must be a positive number of seconds, got {value!r}"
        raise ValueError(msg)
    return seconds


def _codec(name: str, value: str) -> str:
    if value not in CODECS:
        msg = f"{name} must be one of {', '.join(CODECS)}, got {value!r}"
        raise ValueError(msg)
    return value


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _bool(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    msg = f"{name} must be true or false, got {value!r}"
    raise ValueError(msg)


def _options(params: dict[str, Any], order: Mapping[str, _Convert]) -> tuple[tuple[str, Any], ...]:
    """The keyword arguments among ``params``, in the order ``order`` lists them."""
    return tuple((name, params[name]) for name in order if name in params)


_REDIS_SOURCE: dict[str, _Convert] = {
    "stream": _text,
    "group": _text,
    "consumer": _text,
    "batch_size": _positive_int,
    "block": _seconds,
    "claim_idle": _seconds,
    "field": _text,
    "codec": _codec,
}
_REDIS_SINK: dict[str, _Convert] = {
    "stream": _text,
    "maxlen": _positive_int,
    "approximate": _bool,
    "field": _text,
    "codec": _codec,
}


def _redis(url: _Url) -> ConnectorSpec:
    url.host_port()
    db = url.path.strip("/")
    if db and not db.isdigit():
        url.fail(f"the database {db!r} is not a number")
    address = urlunsplit((url.scheme, url.netloc, url.path, "", ""))
    if url.role == "source":
        params = url.params(_REDIS_SOURCE, ("stream", "group"))
        stream = params.pop("stream")
        return ConnectorSpec(
            "RedisStreamSource", (address, stream), _options(params, _REDIS_SOURCE)
        )
    params = url.params(_REDIS_SINK, ("stream",))
    stream = params.pop("stream")
    return ConnectorSpec("RedisStreamSink", (address, stream), _options(params, _REDIS_SINK))


_NATS_SOURCE: dict[str, _Convert] = {
    "subject": _text,
    "stream": _text,
    "durable": _text,
    "batch_size": _positive_int,
    "fetch_timeout": _seconds,
    "ack_wait": _seconds,
    "codec": _codec,
}
_NATS_SINK: dict[str, _Convert] = {
    "subject": _text,
    "codec": _codec,
    "max_in_flight": _positive_int,
}


def _nats(url: _Url) -> ConnectorSpec:
    url.host_port()
    if url.path.strip("/"):
        url.fail(f"a path ({url.path!r}) means nothing here; the subject is subject=")
    address = urlunsplit((url.scheme, url.netloc, "", "", ""))
    if url.role == "source":
        params = url.params(_NATS_SOURCE, ("subject", "stream", "durable"))
        subject = params.pop("subject")
        return ConnectorSpec("NatsSource", (address, subject), _options(params, _NATS_SOURCE))
    params = url.params(_NATS_SINK, ("subject",))
    subject = params.pop("subject")
    return ConnectorSpec("NatsSink", (address, subject), _options(params, _NATS_SINK))


def _offset_reset(name: str, value: str) -> str:
    if value not in ("earliest", "latest"):
        msg = f"{name} must be earliest or latest, got {value!r}"
        raise ValueError(msg)
    return value


_KAFKA_SOURCE: dict[str, _Convert] = {
    "group": _text,
    "batch_size": _positive_int,
    "session_timeout": _seconds,
    "auto_offset_reset": _offset_reset,
    "commit_interval": _seconds,
    "codec": _codec,
}
_KAFKA_SINK: dict[str, _Convert] = {"codec": _codec, "timeout": _seconds}


def _kafka(url: _Url) -> ConnectorSpec:
    if not url.netloc:
        url.fail("no broker address")
    if "@" in url.netloc:
        url.fail("credentials in a Kafka URL are not supported")
    for server in url.netloc.split(","):
        host, colon, port = server.rpartition(":")
        if not (colon and host and port.isdigit() and int(port) < 65536):
            url.fail(f"the broker address {server!r} is not HOST:PORT")
    topic = unquote(url.path.removeprefix("/"))
    if not topic or "/" in topic:
        url.fail("the path must be the topic: /TOPIC")
    if url.role == "source":
        params = url.params(_KAFKA_SOURCE, ("group",))
        return ConnectorSpec("KafkaSource", (url.netloc, topic), _options(params, _KAFKA_SOURCE))
    params = url.params(_KAFKA_SINK, ())
    return ConnectorSpec("KafkaSink", (url.netloc, topic), _options(params, _KAFKA_SINK))


def _character(name: str, value: str) -> str:
    if len(value) != 1:
        msg = f"{name} must be one character (%09 for a tab), got {value!r}"
        raise ValueError(msg)
    return value


_JSONL_SOURCE: dict[str, _Convert] = {"follow": _bool, "poll": _seconds, "codec": _codec}
_JSONL_SINK: dict[str, _Convert] = {"codec": _codec, "fsync": _bool}
_CSV_SOURCE: dict[str, _Convert] = {"follow": _bool, "poll": _seconds, "delimiter": _character}
_CSV_SINK: dict[str, _Convert] = {"delimiter": _character}


def _file(url: _Url) -> ConnectorSpec:
    if url.netloc not in ("", "localhost"):
        url.fail(f"a file URL names no host ({url.netloc!r}); an absolute path is file:///PATH")
    path = unquote(url.path)
    if not path or path.endswith("/"):
        url.fail("no file name")
    csv = path.lower().endswith(".csv")
    if url.role == "source":
        known = _CSV_SOURCE if csv else _JSONL_SOURCE
        kind = "CsvSource" if csv else "JsonLinesSource"
    else:
        known = _CSV_SINK if csv else _JSONL_SINK
        kind = "CsvSink" if csv else "JsonLinesSink"
    params = url.params(known, ())
    return ConnectorSpec(kind, (path,), _options(params, known))


_PARSERS: dict[str, Callable[[_Url], ConnectorSpec]] = {
    "redis": _redis,
    "nats": _nats,
    "kafka": _kafka,
    "file": _file,
}


def _shown(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))
