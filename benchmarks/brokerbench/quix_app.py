"""Quix Streams: ``sdf.filter(...).apply(...).to_topic(out)`` with JSON serdes.

Defaults otherwise (at-least-once, a checkpoint every 5 s), except the 6-second
session timeout every grouped Kafka client here uses. Runs until SIGTERM.
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application

from .workload import add_cents, keep


def run(key: str, config: dict[str, Any]) -> None:
    app = Application(
        broker_address=config["bootstrap"],
        consumer_group=config["group"],
        auto_offset_reset="earliest",
        use_changelog_topics=False,
        loglevel="WARNING",
        consumer_extra_config={"session.timeout.ms": config["session_timeout_ms"]},
    )
    source = app.topic(config["input"], value_deserializer="json")
    sink = app.topic(config["output"], value_serializer="json")
    frame = app.dataframe(source)
    frame = frame.filter(keep).apply(add_cents)
    frame.to_topic(sink)
    app.run()
