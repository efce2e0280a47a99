"""Bytewax 0.21: KafkaSource -> filter_map -> KafkaSink, one worker, with recovery.

Bytewax's KafkaSource joins no consumer group and commits nothing to Kafka; it is
at-least-once only with recovery (source offsets snapshotted in SQLite), here with
1-second epochs. It reads until stopped: the driver sends SIGTERM once the output
is complete and checked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main
from confluent_kafka import OFFSET_BEGINNING

from .workload import transform


def _step(message: Any) -> Any:
    data = transform(message.value)
    return None if data is None else KafkaSinkMessage(None, data)


def run(key: str, config: dict[str, Any]) -> None:
    main: Any = cli_main  # bytewax's run and recovery functions are not annotated
    recovery: Any = RecoveryConfig
    brokers = [config["bootstrap"]]
    flow = Dataflow("bench")
    source = KafkaSource(
        brokers, [config["input"]], starting_offset=OFFSET_BEGINNING, batch_size=1000
    )
    messages = op.input("in", flow, source)
    outputs = op.filter_map("transform", messages, _step)
    op.output("out", outputs, KafkaSink(brokers, config["output"]))
    main(
        flow,
        epoch_interval=timedelta(seconds=1),
        recovery_config=recovery(config["recovery_dir"]),
    )
