"""Topic specs and message decoders (no servers)."""

from __future__ import annotations

import json
import re

import pytest
from support.streaming import RETURNS_SCHEMA

from feature_assets.model.topics import TopicSpecError, parse_topic
from feature_assets.streaming.decoders import (
    CsvDecoder,
    DecodeError,
    Decoder,
    JsonDecoder,
    UnknownDecoder,
    decoder_for,
    register_decoder,
)

SEED_TOPIC = "events.returns/fields=ts,return_id,user_id,product_id,refund_amt/host=kafka/port=9092"


def test_seed_topic_spec():
    spec = parse_topic(SEED_TOPIC)
    assert spec.name == "events.returns"
    assert spec.fields == ("ts", "return_id", "user_id", "product_id", "refund_amt")
    assert spec.format == "csv"
    assert spec.default_bootstrap == "kafka:9092"
    assert spec.dead_letter_topic == "events.returns.dlq"


def test_plain_topic_is_json_with_custom_options():
    spec = parse_topic("clicks/format=json/dlq=clicks-bad/region=eu")
    assert (spec.name, spec.format, spec.dead_letter_topic, spec.params) == (
        "clicks",
        "json",
        "clicks-bad",
        {"region": "eu"},
    )
    assert parse_topic("clicks").format == "json"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("bad topic/fields=a", "not a valid Kafka topic name"),
        ("t/fields", "not key=value"),
        ("t/format=csv", "no fields"),
        ("t/fields=a,a", "twice"),
        ("t/fields=a/fields=b", "twice"),
        ("t/fields=a b", "not a column name"),
        ("t/fields=a/port=x", "port"),
    ],
)
def test_bad_topic_specs_name_the_token(text, fragment):
    with pytest.raises(TopicSpecError, match=fragment):
        parse_topic(text)


def test_csv_decoder_types_nulls_and_quotes():
    decoder = decoder_for(parse_topic(SEED_TOPIC), RETURNS_SCHEMA)
    assert isinstance(decoder, CsvDecoder)
    row = decoder.decode(b"1701475200000,F8E3E287-EA5D-6C4B-915D-A5E51A5557EC,91,81,356")
    assert row == {
        "ts": 1701475200000,
        "return_id": "F8E3E287-EA5D-6C4B-915D-A5E51A5557EC",
        "user_id": "91",
        "product_id": "81",
        "refund_amt": 356,
    }
    assert decoder.decode(b'1,"a,b",,p,\r\n') == {
        "ts": 1,
        "return_id": "a,b",
        "user_id": None,
        "product_id": "p",
        "refund_amt": None,
    }


@pytest.mark.parametrize(
    "message, fragment",
    [
        (b"1,2,3", "expected 5 fields"),
        (b"1,r,u,p,12x", "'refund_amt' (long): '12x' is not an integer"),
        (b"1.5,r,u,p,1", "'ts' (long)"),
        (b"\xff\xfe", "not UTF-8"),
        (b"1,r,u,p,99999999999999999999", "out of range"),
    ],
)
def test_csv_decoder_errors_name_the_column(message, fragment):
    decoder = decoder_for(parse_topic(SEED_TOPIC), RETURNS_SCHEMA)
    with pytest.raises(DecodeError, match=re.escape(fragment)):
        decoder.decode(message)


def test_json_decoder():
    decoder = decoder_for(parse_topic("events.returns"), RETURNS_SCHEMA)
    assert isinstance(decoder, JsonDecoder)
    row = decoder.decode(json.dumps({"ts": 5, "user_id": "7", "refund_amt": 3.0}).encode())
    assert row == {"ts": 5, "return_id": None, "user_id": "7", "product_id": None, "refund_amt": 3}
    for message, fragment in [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"ts": "5"}', "'ts' \\(long\\)"),
        (b'{"ts": true}', "not an integer"),
        (b'{"refund_amt": 1.5}', "not an integer"),
        (b'{"user_id": 7}', "not a string"),
        (b'{"usr_id": "7"}', "'usr_id' is not in the source schema"),
    ]:
        with pytest.raises(DecodeError, match=fragment):
            decoder.decode(message)


def test_registered_and_imported_decoders():
    @register_decoder("pipes-test")
    class PipeDecoder(Decoder):
        def decode(self, value: bytes):
            return self.typed_row(dict(zip(self.spec.fields, value.decode().split("|"))), from_text=True)

    spec = parse_topic("t/fields=ts,user_id/format=pipes-test")
    assert decoder_for(spec, RETURNS_SCHEMA).decode(b"12|u") == {
        **dict.fromkeys(RETURNS_SCHEMA),
        "ts": 12,
        "user_id": "u",
    }
    imported = decoder_for(parse_topic("t/format=feature_assets.streaming.decoders:JsonDecoder"), RETURNS_SCHEMA)
    assert isinstance(imported, JsonDecoder)
    with pytest.raises(UnknownDecoder, match="unknown decoder format 'avro-x'"):
        decoder_for(parse_topic("t/format=avro-x"), RETURNS_SCHEMA)
    with pytest.raises(UnknownDecoder, match="not columns of the source table"):
        decoder_for(parse_topic("t/fields=ts,nope"), RETURNS_SCHEMA)
