"""Decoders: a Kafka message's bytes -> one source row `{column: value}`, values of the source's column types.

Built in: `csv` (the topic's `fields=` in order, the seed's console-producer lines) and `json` (one object per
message, keyed by column name). A topic picks one with `/format=NAME`. Users add their own formats by name:

    from feature_assets.streaming.decoders import Decoder, register_decoder

    @register_decoder("pipes")
    class PipeDecoder(Decoder):
        def decode(self, value: bytes) -> dict[str, Any]:
            return self.typed_row(dict(zip(self.spec.fields, value.decode().split("|"))), from_text=True)

A name that is not registered is looked up in the `feature_assets.decoders` entry points of installed packages,
then imported when it is a `module:attribute` path, so a decoder in the feature repo's own package works without
any registration call.

A message that is not a row of the declared schema raises `DecodeError` with the reason; the job sends it to
the dead-letter topic. Columns the message does not carry are null; columns it carries that the schema does not
declare are refused (a typo in a producer would otherwise be silently dropped).
"""

from __future__ import annotations

import csv
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from feature_assets.model.topics import CSV, JSON, TopicSpec
from feature_assets.sql.types import check_value, parse_text

ENTRY_POINT_GROUP = "feature_assets.decoders"


class DecodeError(ValueError):
    """A message that is not a row of the topic's declared schema."""


class UnknownDecoder(LookupError):
    pass


class Decoder(ABC):
    """Decodes the messages of one topic. `schema` is {column: type} (see `feature_assets.sql.types`) of the
    source table; `spec` the parsed topic string (its `fields`, `params`)."""

    def __init__(self, spec: TopicSpec, schema: Mapping[str, str]):
        self.spec = spec
        self.schema = dict(schema)

    @abstractmethod
    def decode(self, value: bytes) -> dict[str, Any]:
        """The source row of one message; raises DecodeError."""

    def typed_row(self, raw: Mapping[str, Any], from_text: bool = False) -> dict[str, Any]:
        """`raw` with each value converted to its column's type (`from_text`: values are strings, as in CSV)."""
        row: dict[str, Any] = dict.fromkeys(self.schema)
        for column, value in raw.items():
            type_name = self.schema.get(column)
            if type_name is None:
                raise DecodeError(f"column {column!r} is not in the source schema")
            try:
                row[column] = (
                    parse_text(value, type_name) if from_text and value is not None else check_value(value, type_name)
                )
            except ValueError as error:
                raise DecodeError(f"column {column!r} ({type_name}): {error}") from None
        return row


class CsvDecoder(Decoder):
    """Comma-separated values in the order of the topic's `fields`; an empty field is null. Quoted fields
    follow RFC 4180 (a value may hold a comma when quoted)."""

    def __init__(self, spec: TopicSpec, schema: Mapping[str, str]):
        super().__init__(spec, schema)
        missing = [f for f in spec.fields if f not in self.schema]
        if missing:
            raise UnknownDecoder(f"topic {spec.name}: fields {missing} are not columns of the source table")

    def decode(self, value: bytes) -> dict[str, Any]:
        try:
            text = value.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise DecodeError(f"not UTF-8 text: {error}") from None
        try:
            (values,) = list(csv.reader([text], strict=True))
        except (csv.Error, ValueError) as error:
            raise DecodeError(f"not one CSV line: {error}") from None
        if len(values) != len(self.spec.fields):
            raise DecodeError(
                f"expected {len(self.spec.fields)} fields ({','.join(self.spec.fields)}), got {len(values)}"
            )
        return self.typed_row(dict(zip(self.spec.fields, values)), from_text=True)


class JsonDecoder(Decoder):
    """One JSON object per message, keyed by column name; a missing column is null."""

    def decode(self, value: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(value)
        except (UnicodeDecodeError, ValueError) as error:
            raise DecodeError(f"not JSON: {error}") from None
        if not isinstance(payload, dict):
            raise DecodeError(f"expected a JSON object, got {type(payload).__name__}")
        return self.typed_row(payload)


DecoderFactory = Callable[[TopicSpec, Mapping[str, str]], Decoder]
_REGISTRY: dict[str, DecoderFactory] = {CSV: CsvDecoder, JSON: JsonDecoder}


def register_decoder(name: str) -> Callable[[DecoderFactory], DecoderFactory]:
    """Class decorator (or a call with any factory `(spec, schema) -> Decoder`) naming a decoder format."""

    def add(factory: DecoderFactory) -> DecoderFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def decoder_for(spec: TopicSpec, schema: Mapping[str, str]) -> Decoder:
    """The decoder of a topic's format; raises UnknownDecoder naming the format."""
    return _factory(spec.format)(spec, schema)


def _factory(name: str) -> DecoderFactory:
    if name in _REGISTRY:
        return _REGISTRY[name]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            _REGISTRY[name] = entry.load()
            return _REGISTRY[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise UnknownDecoder(f"decoder format {name!r} cannot be imported: {error}") from None
        _REGISTRY[name] = factory
        return factory  # type: ignore[no-any-return]
    known = ", ".join(sorted(_REGISTRY))
    raise UnknownDecoder(
        f"unknown decoder format {name!r} (known: {known}; register one with register_decoder, an entry point in "
        f"{ENTRY_POINT_GROUP!r}, or give module:attribute)"
    )
