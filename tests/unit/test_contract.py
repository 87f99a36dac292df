"""The contract core, judged by hypothesis: valid records pass, every single-field
mutation outside a constraint fails naming that field, and the exported JSON Schema
agrees with the pydantic model wherever JSON Schema can judge."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fraudctl.contract import (
    COUNTRIES,
    DEVICES,
    MAX_AMOUNT,
    json_schema,
    parse_utc_timestamp,
    validate_bytes,
    validate_record,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


VALID: dict[str, Any] = {
    "event_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "user_id": "user-1",
    "transaction_amount": 10.0,
    "country": "US",
    "device": "web",
    "event_ts": "2026-01-01T00:00:00Z",
}


def clock() -> datetime:
    return NOW


def fmt(moment: datetime, suffix: str = "Z") -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + suffix


ulids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("01234567"),
    st.text(alphabet=CROCKFORD, min_size=25, max_size=25),
)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2026, 6, 1, 12, 0, 59)
).map(lambda d: d.replace(tzinfo=UTC))

valid_records = st.fixed_dictionaries(
    {
        "event_id": ulids,
        "user_id": st.integers(0, 10**9).map(lambda n: f"user-{n}"),
        "transaction_amount": st.floats(0, MAX_AMOUNT, allow_nan=False) | st.integers(0, 5000),
        "country": st.sampled_from(COUNTRIES),
        "device": st.sampled_from(DEVICES),
        "event_ts": st.tuples(timestamps, st.sampled_from(["Z", "+00:00"])).map(
            lambda pair: fmt(*pair)
        ),
    },
    optional={"label": st.sampled_from([0, 1, None])},
)

# For each field, values that break exactly that field's constraint.
bad_values: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(
        st.text(alphabet=CROCKFORD, max_size=40).filter(lambda s: len(s) != 26),
        ulids.map(lambda u: "8" + u[1:]),  # above the ULID maximum
        ulids.map(lambda u: u[:5] + "U" + u[6:]),  # U is not Crockford base32
        ulids.map(str.lower),
        st.integers(),
        st.none(),
    ).filter(lambda v: not (isinstance(v, str) and v.isdigit() and len(v) == 26)),
    "user_id": st.one_of(
        st.text(max_size=12).filter(lambda s: not s.startswith("user-") or s == "user-"),
        st.integers(0, 100).map(lambda n: f"User-{n}"),
        st.integers(0, 100).map(lambda n: f"user-{n}x"),
        st.integers(),
    ),
    "transaction_amount": st.one_of(
        st.floats(max_value=-1e-9),
        st.floats(min_value=MAX_AMOUNT + 1e-6),
        st.just(float("nan")),
        st.just(float("inf")),
        st.booleans(),
        st.text(max_size=5),
        st.none(),
    ),
    "country": st.text(max_size=4).filter(lambda s: s not in COUNTRIES) | st.integers(),
    "device": st.sampled_from(["IOS", "Web", "tablet", "", "android "]) | st.booleans(),
    "event_ts": st.one_of(
        timestamps.map(lambda d: fmt(d, "")),  # naive
        timestamps.map(lambda d: fmt(d, "+01:00")),  # not UTC
        st.integers(61, 10**6).map(lambda s: fmt(NOW + timedelta(seconds=s))),  # future
        st.sampled_from(["yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", ""]),
        st.integers(),
    ),
    "label": st.sampled_from([2, -1, True, False, "1", 0.5, "null"]),
}


@settings(max_examples=300)
@given(valid_records)
def test_valid_records_pass(record: dict[str, Any]) -> None:
    verdict = validate_record(record, clock=clock)
    assert verdict.ok, verdict.violations
    round_trip = json.loads(verdict.record.model_dump_json())  # type: ignore[union-attr]
    assert validate_record(round_trip, clock=clock).ok


@settings(max_examples=400)
@given(valid_records, st.data())
def test_every_single_field_mutation_fails_naming_that_field(
    record: dict[str, Any], data: st.DataObject
) -> None:
    field = data.draw(st.sampled_from(sorted(bad_values)))
    record[field] = data.draw(bad_values[field])
    verdict = validate_record(record, clock=clock)
    assert not verdict.ok
    assert [v.field for v in verdict.violations] == [field]
    assert verdict.violations[0].reason


@pytest.mark.parametrize(
    "field", ["event_id", "user_id", "transaction_amount", "country", "device", "event_ts"]
)
def test_missing_required_field_is_named(field: str) -> None:
    record = dict(VALID)
    del record[field]
    verdict = validate_record(record, clock=clock)
    assert [(v.field, v.reason) for v in verdict.violations] == [(field, "is required")]


def test_unknown_field_and_non_object_are_refused() -> None:
    record = VALID | {"merchant": "x"}
    assert validate_record(record, clock=clock).violations[0].field == "merchant"
    assert validate_record([1, 2], clock=clock).violations[0].field == "(record)"
    assert "not JSON" in validate_bytes(b"{oops", clock=clock).violations[0].reason
    assert "UTF-8" in validate_bytes(b"\xff\xfe", clock=clock).violations[0].reason


def test_timestamps_accept_z_and_utc_offset_and_the_clock_is_injectable() -> None:
    assert parse_utc_timestamp("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_utc_timestamp("2026-01-01T00:00:00+00:00") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="is not UTC"):
        parse_utc_timestamp("2026-01-01T00:00:00+02:00")
    with pytest.raises(ValueError, match="has no time zone"):
        parse_utc_timestamp("2026-01-01T00:00:00")
    for text in ("yesterday", "2026-01-01 00:00:00Z", "20260101T000000Z", "2026-02-30T00:00Z"):
        with pytest.raises(ValueError, match="ISO-8601 UTC"):
            parse_utc_timestamp(text)
    record = VALID | {"transaction_amount": 1, "event_ts": fmt(NOW + timedelta(seconds=59))}
    assert validate_record(record, clock=clock).ok
    later = validate_record(record, clock=lambda: NOW - timedelta(seconds=2))
    assert later.violations[0].field == "event_ts"
    assert "future" in later.violations[0].reason


# Format assertion on: "date-time" is judged (RFC 3339, via rfc3339-validator), so a
# month 13 fails the schema as it fails the model.
SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(
    json_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def judgeable_by_json_schema(record: dict[str, Any]) -> bool:
    """JSON Schema cannot know the clock; NaN and infinities are not JSON values (RFC 8259),
    so a schema never sees them; and Python's `re` (which the jsonschema package uses) lets
    `$` match before a final newline, unlike ECMA-262 that the spec names."""
    amount = record.get("transaction_amount")
    if isinstance(amount, float) and not math.isfinite(amount):
        return False
    ts = record.get("event_ts")
    if isinstance(ts, str):
        try:
            if parse_utc_timestamp(ts) > NOW:
                return False
        except ValueError:
            pass
    return not any(isinstance(v, str) and v.endswith("\n") for v in record.values())


@settings(max_examples=500)
@given(valid_records, st.data())
def test_json_schema_and_model_agree(record: dict[str, Any], data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        field = data.draw(st.sampled_from(sorted(bad_values)))
        record[field] = data.draw(bad_values[field])
    assume(judgeable_by_json_schema(record))
    by_schema = SCHEMA_VALIDATOR.is_valid(json.loads(json.dumps(record)))
    by_model = validate_record(record, clock=clock).ok
    assert by_schema == by_model, record


def test_schema_carries_every_expressible_constraint() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props = schema["properties"]
    assert props["event_id"]["pattern"] == "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
    assert props["user_id"]["pattern"] == "^user-[0-9]+$"
    assert (props["transaction_amount"]["minimum"], props["transaction_amount"]["maximum"]) == (
        0,
        5000,
    )
    assert props["country"]["enum"] == list(COUNTRIES)
    assert props["device"]["enum"] == list(DEVICES)
    assert {"type": "null"} in props["label"]["anyOf"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {
        "event_id",
        "user_id",
        "transaction_amount",
        "country",
        "device",
        "event_ts",
    }
