"""The compiled Avro record encoders of the fetch log against fastavro with the codec's converters (the
reference), on random records of every type the log writes: nulls, empty and nested containers, integers at and
past the type's range, non-ASCII text, and values of the wrong kind that the converters accept or refuse."""

from __future__ import annotations

import numpy as np
import pytest

from feature_assets.online.logging.avro_writer import UnsupportedSchema, record_encoder
from feature_assets.online.logging.codec import JoinCodec

TYPES = {
    "a_long": "bigint",
    "an_int": "int",
    "a_double": "double",
    "a_float": "float",
    "a_string": "string",
    "a_bool": "boolean",
    "some_bytes": "binary",
    "longs": "array<bigint>",
    "doubles": "array<double>",
    "strings": "array<string>",
    "bools": "array<boolean>",
    "counts": "map<string,bigint>",
    "histogram": "map<bigint,double>",
    "nested": "array<array<bigint>>",
    "lists_by_name": "map<string,array<string>>",
    "unknown_type": "decimal(10,2)",  # written as a string
}
LONG_EDGES = [0, 1, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 2**63, -(2**63) - 1]


def random_integer(rng: np.random.Generator, served: bool) -> int:
    if served:  # in every integer type's range
        return int(rng.integers(-(2**31), 2**31)) >> int(rng.integers(0, 31))
    if rng.random() < 0.3:
        return int(rng.choice(LONG_EDGES))
    return int(rng.integers(-(2**62), 2**62)) >> int(rng.integers(0, 62))


def random_text(rng: np.random.Generator) -> str:
    alphabet = ["a", "Z", "0", " ", "é", "ß", "中", "😀", "\x00", '"', "\\"]
    return "".join(rng.choice(alphabet, size=int(rng.integers(0, 12))))


def odd_value(rng: np.random.Generator):
    """A value of a kind a field may not expect."""
    return [
        True,
        False,
        "12",
        "not a number",
        3.7,
        float("nan"),
        float("inf"),
        1e300,
        np.int64(5),
        np.float64(2.5),
        (1, 2),
        [1, None],
        {"k": 1},
        {1: 2.0, "1": 3.0},
        b"raw",
        bytearray(b"ba"),
        10**30,
    ][int(rng.integers(0, 17))]


def random_value(rng: np.random.Generator, type_name: str, served: bool = False):
    """A random value of the type; `served`: as a fetch serves it (the right kind, in range), else sometimes
    of another kind or out of range."""
    if rng.random() < 0.15:
        return None
    if not served and rng.random() < 0.08:
        return odd_value(rng)
    if type_name in ("bigint", "int"):
        return random_integer(rng, served)
    if type_name in ("double", "float"):
        return float(rng.choice([0.0, -0.0, 1.5, -2.25, 1e-300, 3.4e38, float(rng.normal() * 1e6)]))
    if type_name in ("string", "decimal(10,2)"):
        return random_text(rng)
    if type_name == "boolean":
        return bool(rng.random() < 0.5)
    if type_name == "binary":
        return rng.bytes(int(rng.integers(0, 20)))
    if type_name.startswith("array<"):
        inner = type_name[len("array<") : -1]
        return [random_value(rng, inner, served) for _ in range(int(rng.integers(0, 5)))]
    key_type, value_type = type_name[len("map<") : -1].split(",", 1)
    keys = [
        random_integer(rng, served) if key_type == "bigint" else random_text(rng)
        for _ in range(int(rng.integers(0, 5)))
    ]
    return {key: random_value(rng, value_type, served) for key in keys}


def reference_or_error(encode, record):
    try:
        return encode(record)
    except Exception as error:  # noqa: BLE001
        return type(error)


@pytest.mark.parametrize("seed", range(3))
def test_compiled_encoders_write_what_fastavro_writes_or_leave_the_record_to_it(seed):
    rng = np.random.default_rng(seed)
    codec = JoinCodec("j.test", {"user_id": "string", "account": "bigint"}, TYPES)
    compiled = record_encoder(codec.value_schema["fields"])
    for served in (False, True):
        taken = 0
        for _ in range(2000):
            record = {name: random_value(rng, type_name, served) for name, type_name in TYPES.items()}
            reference = reference_or_error(codec.reference_encode_value, record)
            fast = reference_or_error(compiled, record)
            if isinstance(fast, bytes):
                taken += 1
                assert fast == reference, record
            assert reference_or_error(codec.encode_value, record) == reference, record
        # what a fetch serves always takes the compiled path; many of the others go to fastavro
        assert taken == 2000 if served else 100 < taken < 1900

    for key in [{"user_id": "5", "account": 2**63 - 1}, {"user_id": None, "account": "7"}, {"account": 2**64}]:
        assert reference_or_error(codec.encode_key, key) == reference_or_error(codec.reference_encode_key, key)


def test_a_schema_outside_the_logs_types_is_refused_when_the_encoder_is_built():
    with pytest.raises(UnsupportedSchema, match="enum"):
        record_encoder([{"name": "x", "type": ["null", {"type": "enum", "name": "e", "symbols": ["A"]}]}])
    with pytest.raises(UnsupportedSchema, match="union of null"):
        record_encoder([{"name": "x", "type": "long"}])
