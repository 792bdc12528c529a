"""Kafka topic specs as Chronon writes them: `name/key=value/key=value`.

`events.returns/fields=ts,return_id,user_id,product_id,refund_amt/host=kafka/port=9092`:

- `fields`: the column names of a CSV message, in order (the seed's console-producer lines);
- `format`: the decoder, `csv` (default when `fields` is given), `json` (default otherwise: one JSON object
  per message, keyed by column name) or the name of a registered decoder;
- `host`, `port`: the broker; defaults that the Kafka settings (`FEATURE_ASSETS_KAFKA_BOOTSTRAP`) override;
- `dlq`: the dead-letter topic, `<name>.dlq` unless given;
- any other token is kept in `params` for a user's decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CSV, JSON = "csv", "json"
DLQ_SUFFIX = ".dlq"
# Kafka's own rule for topic names.
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TopicSpecError(ValueError):
    """A topic string that cannot be read; the message names the token at fault."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    fields: tuple[str, ...] = ()
    format: str = JSON
    host: str | None = None
    port: int | None = None
    dead_letter_topic: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def default_bootstrap(self) -> str | None:
        """`host:port` from the spec, when it names them."""
        if not self.host:
            return None
        return f"{self.host}:{self.port or 9092}"


def parse_topic(text: str) -> TopicSpec:
    """The spec of a topic string; raises TopicSpecError naming the bad token."""
    if not isinstance(text, str) or not text.strip():
        raise TopicSpecError("the topic is empty")
    name, *tokens = text.strip().split("/")
    if not TOPIC_NAME.match(name):
        raise TopicSpecError(f"{name!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-')")
    params: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise TopicSpecError(f"token {token!r} of topic {text!r} is not key=value")
        if key in params:
            raise TopicSpecError(f"topic {text!r} sets {key!r} twice")
        params[key] = value
    fields = tuple(f.strip() for f in params.pop("fields", "").split(",") if f.strip())
    for column in fields:
        if not FIELD_NAME.match(column):
            raise TopicSpecError(f"field {column!r} in topic {text!r} is not a column name")
    if len(set(fields)) != len(fields):
        raise TopicSpecError(f"topic {text!r} lists a field twice")
    fmt = params.pop("format", CSV if fields else JSON)
    if fmt == CSV and not fields:
        raise TopicSpecError(f"topic {text!r} is CSV but has no fields=... to name its columns in order")
    port_text = params.pop("port", None)
    port = None
    if port_text is not None:
        if not port_text.isdigit():
            raise TopicSpecError(f"port {port_text!r} of topic {text!r} is not a number")
        port = int(port_text)
    host = params.pop("host", None) or None
    dlq = params.pop("dlq", None) or name + DLQ_SUFFIX
    if not TOPIC_NAME.match(dlq):
        raise TopicSpecError(f"dead-letter topic {dlq!r} of topic {text!r} is not a valid Kafka topic name")
    return TopicSpec(name, fields, fmt, host, port, dlq, params)
