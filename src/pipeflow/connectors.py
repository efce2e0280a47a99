"""Connectors: messages in from brokers and files, results out to them.

>>> from pipeflow.connectors import Message
>>> Message({"id": 1}, source="orders", position=7)
Message({'id': 1}, source='orders', partition=0, position=7)

Every source yields ``Message`` objects whose ``value`` is decoded by its codec
(``codec="json"`` by default); every sink writes results (a ``Message`` by its
``value``) with its codec. Broker connectors need their extra:
``pip install 'pipeflow-streams[redis]'``, ``[nats]`` or ``[kafka]``.
"""

from ._connectors._codecs import Codec as Codec
from ._connectors._codecs import JsonCodec as JsonCodec
from ._connectors._codecs import RawCodec as RawCodec
from ._connectors._codecs import TextCodec as TextCodec
from ._connectors._csv import CsvSink as CsvSink
from ._connectors._csv import CsvSource as CsvSource
from ._connectors._jsonlines import JsonLinesSink as JsonLinesSink
from ._connectors._jsonlines import JsonLinesSource as JsonLinesSource
from ._connectors._kafka_sink import KafkaSink as KafkaSink
from ._connectors._kafka_source import KafkaSource as KafkaSource
from ._connectors._message import Message as Message
from ._connectors._message import UndecodableMessage as UndecodableMessage
from ._connectors._nats_sink import NatsSink as NatsSink
from ._connectors._nats_source import NatsSource as NatsSource
from ._connectors._redis_sink import RedisStreamSink as RedisStreamSink
from ._connectors._redis_source import RedisSourceStatistics as RedisSourceStatistics
from ._connectors._redis_source import RedisStreamSource as RedisStreamSource
from ._core._errors import DecodeError as DecodeError
from ._core._errors import EncodeError as EncodeError

__all__ = [
    "Codec",
    "CsvSink",
    "CsvSource",
    "DecodeError",
    "EncodeError",
    "JsonCodec",
    "JsonLinesSink",
    "JsonLinesSource",
    "KafkaSink",
    "KafkaSource",
    "Message",
    "NatsSink",
    "NatsSource",
    "RawCodec",
    "RedisSourceStatistics",
    "RedisStreamSink",
    "RedisStreamSource",
    "TextCodec",
    "UndecodableMessage",
]
