"""The trigger event envelope: every tag round-trips, the wire form is as documented, the allowlist holds."""

from __future__ import annotations

import json
import math
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from airlock.connection import ConnectionFields
from airlock.serde import (
    ENVELOPE_VERSION,
    DeserializationError,
    SerializationError,
    deserialize,
    serialize,
)

HERE = "tests.test_serde"


@dataclass
class Inner:
    n: int


@dataclass
class Event:
    name: str
    at: datetime
    inner: Inner
    tags: list[str] = field(default_factory=list)
    computed: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.computed = len(self.name)


class Reading(BaseModel):
    sensor: str
    value: Decimal
    taken: datetime
    raw: bytes


def roundtrip(value: Any, allowed: list[str] | None = None) -> Any:
    return deserialize(serialize(value), allowed or [])


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        "",
        "héllo ✓",
        [],
        [1, "a", None, [2.5, {"k": "v"}]],
        {},
        {"a": 1, "b": {"c": [True, None]}},
        datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 5, 6, 7, 8, 9),
        date(1999, 12, 31),
        timedelta(days=3, seconds=7, microseconds=11),
        timedelta(seconds=-1.5),
        Decimal("3.14159265358979323846264338327950288"),
        Decimal("-0E+3"),
        b"\x00\xffbinary",
        b"",
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ],
)
def test_round_trip(value: Any) -> None:
    result = roundtrip(value)
    assert result == value
    assert type(result) is type(value)


def test_round_trip_keeps_offsets_and_nested_tags() -> None:
    at = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=-3)))
    value = {"when": [at, date(2024, 1, 2)], "amount": Decimal("10.50"), "id": uuid.uuid4()}
    result = roundtrip(value)
    assert result == value
    assert result["when"][0].utcoffset() == timedelta(hours=-3)
    assert str(result["amount"]) == "10.50"


def test_tuples_become_lists_and_bytearray_becomes_bytes() -> None:
    assert roundtrip((1, (2, 3))) == [1, [2, 3]]
    assert roundtrip(bytearray(b"ab")) == b"ab"


def test_non_finite_floats_travel_as_strict_json() -> None:
    text = serialize([math.nan, math.inf, -math.inf, 1.0])

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not strict JSON")

    json.loads(text, parse_constant=refuse)
    nan, inf, neg, one = deserialize(text, [])
    assert math.isnan(nan) and inf == math.inf and neg == -math.inf and one == 1.0


def test_wire_format_is_the_documented_envelope() -> None:
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    text = serialize(
        {
            "at": at,
            "day": date(2024, 5, 6),
            "wait": timedelta(minutes=1),
            "price": Decimal("1.10"),
            "blob": b"hi",
            "id": uuid.UUID(int=1),
            "list": (1, 2),
        }
    )
    assert json.loads(text) == {
        "__airlock_serde__": ENVELOPE_VERSION,
        "value": {
            "at": {"__type__": "datetime", "value": "2024-05-06T07:08:09+00:00"},
            "day": {"__type__": "date", "value": "2024-05-06"},
            "wait": {"__type__": "timedelta", "value": 60.0},
            "price": {"__type__": "decimal", "value": "1.10"},
            "blob": {"__type__": "bytes", "value": "aGk="},
            "id": {"__type__": "uuid", "value": "00000000-0000-0000-0000-000000000001"},
            "list": [1, 2],
        },
    }


def test_dicts_that_look_like_tags_are_escaped() -> None:
    tricky = {"__type__": "datetime", "value": "2024-01-01T00:00:00"}
    nested = {"__type__": "object", "classpath": "os.system", "value": {"__type__": "dict", "value": []}}
    for value in (tricky, nested, [tricky, {"outer": nested}]):
        assert roundtrip(value) == value
    wire = json.loads(serialize(tricky))["value"]
    assert wire == {"__type__": "dict", "value": [["__type__", "datetime"], ["value", "2024-01-01T00:00:00"]]}
    # The escaped dict was not read back as a datetime, nor the fake object imported.
    assert isinstance(roundtrip(tricky), dict)


def test_dicts_with_non_string_keys_round_trip() -> None:
    value = {1: "one", None: "none", 2.5: [1], False: "f", date(2024, 1, 1): "d", b"k": "b"}
    assert roundtrip(value) == value


def test_dataclasses_round_trip_when_allowed() -> None:
    event = Event("deploy", datetime(2024, 1, 1, tzinfo=UTC), Inner(3), ["a", "b"])
    wire = json.loads(serialize(event))["value"]
    assert wire["__type__"] == "object"
    assert wire["classpath"] == f"{HERE}.Event"
    # init=False fields are recomputed by the class, not carried.
    assert "computed" not in wire["value"]

    result = roundtrip(event, [f"{HERE}.*"])
    assert result == event
    assert isinstance(result.inner, Inner)
    assert result.computed == 6


def test_every_nested_class_must_be_allowed() -> None:
    event = Event("deploy", datetime(2024, 1, 1, tzinfo=UTC), Inner(3))
    with pytest.raises(
        DeserializationError, match=rf"'{HERE}.Inner' is not in allowed_deserialization_classes"
    ):
        roundtrip(event, [f"{HERE}.Event"])


def test_pydantic_models_round_trip_with_aliases() -> None:
    conn = ConnectionFields.model_validate(
        {"conn_type": "postgres", "host": "db", "port": 5432, "schema": "warehouse", "extra": {"a": [1]}}
    )
    result = roundtrip(conn, ["airlock.connection.ConnectionFields"])
    assert isinstance(result, ConnectionFields)
    assert result == conn and result.schema_ == "warehouse"

    reading = Reading(sensor="t1", value=Decimal("21.5"), taken=datetime(2024, 1, 1, tzinfo=UTC), raw=b"\x01")
    assert roundtrip({"r": reading}, [f"{HERE}.Reading"]) == {"r": reading}


def test_unsupported_values_are_refused_by_type() -> None:
    for value, name in ((object(), "object"), ({1, 2}, "set"), (len, "builtin_function_or_method")):
        with pytest.raises(SerializationError, match=f"type {name}"):
            serialize(value)
    with pytest.raises(SerializationError, match=r"type tests\.test_serde\.Holder"):
        serialize({"x": [Holder()]})
    with pytest.raises(SerializationError, match="dict key of type tuple"):
        serialize({(1, 2): "pair"})
    assert issubclass(SerializationError, TypeError)


class Holder:
    pass


def test_classes_defined_in_functions_are_refused() -> None:
    @dataclass
    class Local:
        x: int

    with pytest.raises(SerializationError, match="inside a function"):
        serialize(Local(1))


def test_circular_references_are_refused() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(SerializationError, match="circular"):
        serialize(loop)
    shared = [1, 2]
    assert roundtrip([shared, shared]) == [[1, 2], [1, 2]]


def _object_text(classpath: str) -> str:
    return json.dumps(
        {"__airlock_serde__": 1, "value": {"__type__": "object", "classpath": classpath, "value": {"x": 1}}}
    )


@pytest.fixture
def exploding_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module that raises as soon as anything imports it."""
    name = f"serde_boom_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('this module was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_refused_classes_are_never_imported(exploding_module: str) -> None:
    text = _object_text(f"{exploding_module}.Payload")
    with pytest.raises(DeserializationError, match="not in allowed_deserialization_classes") as info:
        deserialize(text, ["tests.*", "mypkg.events.*"])
    assert f"{exploding_module}.Payload" in str(info.value)
    assert exploding_module not in sys.modules
    # The same text with the class allowed does import the module, so the refusal above meant something.
    with pytest.raises(RuntimeError, match="this module was imported"):
        deserialize(text, [f"{exploding_module}.*"])


def test_allowed_but_unimportable_or_unsuitable_classes() -> None:
    with pytest.raises(DeserializationError, match="cannot import"):
        deserialize(_object_text("no_such_pkg_xyz.Thing"), ["*"])
    with pytest.raises(DeserializationError, match="has no 'Missing'"):
        deserialize(_object_text(f"{HERE}.Missing"), ["*"])
    with pytest.raises(DeserializationError, match="neither a dataclass nor a pydantic model"):
        deserialize(_object_text(f"{HERE}.Holder"), ["*"])
    with pytest.raises(DeserializationError, match="cannot rebuild"):
        deserialize(_object_text(f"{HERE}.Inner").replace('"x"', '"wrong"'), ["*"])


def test_builtin_tags_need_no_allowlist() -> None:
    value = [datetime(2024, 1, 1, tzinfo=UTC), Decimal(1), uuid.UUID(int=5), b"x", timedelta(1)]
    assert deserialize(serialize(value), []) == value


def test_unknown_envelope_versions_are_refused() -> None:
    for version in (2, 0, "1", True, None):
        with pytest.raises(DeserializationError, match="unknown serialization envelope version"):
            deserialize(json.dumps({"__airlock_serde__": version, "value": 1}), [])


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '{"value": 1}', '{"__airlock_serde__": 1}', "null"],
)
def test_text_that_is_not_an_envelope_is_refused(text: str) -> None:
    with pytest.raises(DeserializationError, match="not a serialized payload"):
        deserialize(text, [])


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ({"__type__": "pickle", "value": "x"}, "unknown type tag 'pickle'"),
        ({"__type__": "datetime", "value": "yesterday"}, "invalid datetime value"),
        ({"__type__": "bytes", "value": "***"}, "invalid bytes value"),
        ({"__type__": "timedelta", "value": "60"}, "invalid timedelta value"),
        ({"__type__": "dict", "value": [[1]]}, r"list of \[key, value\] pairs"),
        ({"__type__": "dict", "value": [[[1], 2]]}, "not hashable"),
        ({"__type__": "uuid"}, "has no 'value'"),
        ({"__type__": "object", "value": {}}, "no classpath"),
    ],
)
def test_malformed_tags_are_refused(encoded: dict[str, Any], message: str) -> None:
    with pytest.raises(DeserializationError, match=message):
        deserialize(json.dumps({"__airlock_serde__": 1, "value": encoded}), ["*"])


def test_a_single_string_is_not_an_allowlist() -> None:
    with pytest.raises(TypeError, match="not a single string"):
        deserialize(serialize(1), "tests.*")


def test_next_kwargs_open_the_spliced_event_behind_the_allowlist() -> None:
    import datetime as dt

    from airlock.serde import load_next_kwargs
    from api.services.triggers import splice_event

    payload = serialize({"at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "rows": [1, 2]})
    spliced = splice_event('{"attempt": 2}', payload)  # what the API stores, never decoding either side
    assert load_next_kwargs(spliced, []) == {
        "attempt": 2,
        "event": {"at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "rows": [1, 2]},
    }
    assert load_next_kwargs(None, []) == {}
    assert load_next_kwargs(splice_event(None, serialize(None)), []) == {"event": None}
