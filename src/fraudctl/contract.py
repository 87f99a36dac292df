"""The data contract: the one place where the rules of a transaction are written.

Producer, consumer, server and validator all validate through :func:`validate_record`
(or the :class:`Transaction` model), and ``fraudctl schema`` exports the same rules
as JSON Schema (draft 2020-12).  "Not in the future" is judged against a clock the
caller passes in, so tests and replays control time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
USER_ID_PATTERN = r"^user-[0-9]+$"
# [0-9], not \d: \d matches non-ASCII digits in Python and Rust regexes, not in JSON Schema's.
UTC_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|\+00:00)$"
)
# An event's time: the same form, from the year 1970 on (see EARLIEST_EVENT).
EVENT_TS_PATTERN = "^(19[7-9][0-9]|[2-9][0-9]{3})" + UTC_TIMESTAMP_PATTERN.removeprefix("^[0-9]{4}")
COUNTRIES: tuple[str, ...] = ("US", "CA", "GB", "DE", "FR", "IN", "BR")
DEVICES: tuple[str, ...] = ("ios", "android", "web")
MAX_AMOUNT = 5000.0
MAX_FUTURE_SKEW = timedelta(minutes=1)
# A ULID's clock starts at the Unix epoch: no event can carry an id from before it.
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)

Country = Literal["US", "CA", "GB", "DE", "FR", "IN", "BR"]
Device = Literal["ios", "android", "web"]
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


_UTC_TIMESTAMP = re.compile(UTC_TIMESTAMP_PATTERN)
ISO_UTC_HINT = "must be ISO-8601 UTC like 2026-01-31T12:00:00Z (with 'Z' or '+00:00')"


def parse_utc_timestamp(value: object) -> datetime:
    """Parse an ISO-8601 UTC timestamp (``Z`` or ``+00:00``); refuse anything else,
    saying whether the zone is missing, not UTC, or the text is not ISO-8601 at all."""
    if isinstance(value, str) and _UTC_TIMESTAMP.fullmatch(value) is not None:
        # The pattern guarantees the UTC suffix, so only the calendar can still be wrong.
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(ISO_UTC_HINT) from None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(ISO_UTC_HINT) from None
    else:
        raise ValueError("must be an ISO-8601 UTC timestamp string")
    if moment.tzinfo is None:
        raise ValueError("has no time zone; add 'Z' for UTC")
    if moment.utcoffset() != timedelta(0):
        raise ValueError("is not UTC; convert it and use 'Z' or '+00:00'")
    if isinstance(value, str):
        # fromisoformat also takes forms the pattern does not (a space for 'T', the basic
        # format without dashes); the pattern is the contract.
        raise ValueError(ISO_UTC_HINT)
    return moment.astimezone(UTC)


def format_utc_timestamp(moment: datetime) -> str:
    """The canonical wire form: microseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _label(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
        raise ValueError("must be 0, 1 or null")
    return value


def _not_in_future(value: object, info: ValidationInfo) -> datetime:
    """Parse, then judge "in the future" against the clock in the validation context."""
    moment = parse_utc_timestamp(value)
    context = info.context or {}
    # "latest" (a datetime) lets a hot loop read the clock once per batch, not per record.
    latest = context.get("latest")
    if latest is None:
        latest = context.get("clock", system_clock)() + MAX_FUTURE_SKEW
    if moment < EARLIEST_EVENT:
        raise ValueError("is before 1970-01-01T00:00:00Z (a ULID's clock starts there)")
    if moment > latest:
        now = latest - MAX_FUTURE_SKEW
        raise ValueError(
            f"is {(moment - now).total_seconds():.0f} s in the future "
            f"(at most {MAX_FUTURE_SKEW.total_seconds():.0f} s allowed)"
        )
    return moment


_TIMESTAMP_SCHEMA = {"type": "string", "format": "date-time", "pattern": UTC_TIMESTAMP_PATTERN}
UtcTimestamp = Annotated[
    datetime,
    BeforeValidator(parse_utc_timestamp),
    PlainSerializer(format_utc_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(_TIMESTAMP_SCHEMA | {"description": "ISO-8601 UTC ('Z' or '+00:00')."}),
]
EventTimestamp = Annotated[
    datetime,
    BeforeValidator(_not_in_future),
    PlainSerializer(format_utc_timestamp, return_type=str, when_used="json"),
    WithJsonSchema(
        _TIMESTAMP_SCHEMA
        | {
            "pattern": EVENT_TS_PATTERN,
            "description": "ISO-8601 UTC ('Z' or '+00:00'); not before 1970-01-01, at most "
            "1 minute in the future.",
        }
    ),
]
# strict: JSON Schema's "number" admits neither booleans nor numeric strings.
Amount = Annotated[
    float,
    Field(strict=True, ge=0, le=MAX_AMOUNT, allow_inf_nan=False, description="0 ≤ x ≤ 5000."),
]
EventId = Annotated[
    str,
    Field(
        strict=True,
        pattern=ULID_PATTERN,
        description="ULID: 26 characters of Crockford base32, upper case.",
    ),
]
LabelValue = Annotated[
    Literal[0, 1] | None,
    BeforeValidator(_label),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "enum": [0, 1]}, {"type": "null"}], "default": None}
    ),
]


class Transaction(BaseModel):
    """One card transaction as it travels on the ``transactions`` topic."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Transaction",
        json_schema_extra={"$schema": JSON_SCHEMA_DIALECT, "$id": "urn:fraudctl:transaction"},
    )

    event_id: EventId
    user_id: Annotated[
        str, Field(strict=True, pattern=USER_ID_PATTERN, description="Pseudonymized user id.")
    ]
    transaction_amount: Amount
    country: Annotated[Country, Field(description="Country where the card was used.")]
    device: Annotated[Device, Field(description="Device the transaction came from.")]
    event_ts: EventTimestamp
    label: Annotated[
        LabelValue, Field(description="True label: absent or null in the live stream.")
    ] = None

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class ScoreRequest(Transaction):
    """A transaction to score: its truth is not known yet, so ``label`` is absent or null
    (the label arrives later on the ``labels`` topic)."""

    model_config = ConfigDict(title="ScoreRequest", json_schema_extra=None)

    label: Annotated[
        None, Field(description="Absent or null: the truth arrives later, on the labels topic.")
    ] = None


class LabelRecord(BaseModel):
    """A delayed true label on the ``labels`` topic."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Label")

    event_id: EventId
    label: Annotated[
        Literal[0, 1], BeforeValidator(_label), Field(description="1 fraud, 0 legitimate.")
    ]
    event_ts: UtcTimestamp
    label_ts: Annotated[UtcTimestamp, Field(description="When the label became known.")]


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a transaction."""
    schema = Transaction.model_json_schema(mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **{k: v for k, v in schema.items() if k != "$schema"}}


@dataclass(frozen=True)
class Violation:
    """Why a record breaks the contract: the field (or ``(record)``) and the reason."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    record: Transaction | None
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return self.record is not None


def _violations(exc: ValidationError) -> tuple[Violation, ...]:
    found: list[Violation] = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"]) or "(record)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "extra_forbidden":
            message = "is not a field of the contract"
        found.append(Violation(loc, message))
    return tuple(found)


def judged_at(now: datetime) -> dict[str, Any]:
    """The validation context that judges "in the future" against ``now``: a caller
    validating many records reads the clock once and passes this to each."""
    return {"latest": now + MAX_FUTURE_SKEW}


def _context(clock: Clock, now: datetime | None) -> dict[str, Any]:
    return judged_at(now) if now is not None else {"clock": clock}


def validate_record(
    obj: object, *, clock: Clock = system_clock, now: datetime | None = None
) -> Verdict:
    """Judge one decoded JSON value against the contract (``now``: see ``judged_at``)."""
    if not isinstance(obj, dict):
        return Verdict(None, (Violation("(record)", "must be a JSON object"),))
    try:
        return Verdict(Transaction.model_validate(obj, context=_context(clock, now)), ())
    except ValidationError as exc:
        return Verdict(None, _violations(exc))


def validate_bytes(
    raw: bytes, *, clock: Clock = system_clock, now: datetime | None = None
) -> Verdict:
    """Judge one raw message or line: undecodable bytes and bad JSON are violations too.

    The common case (a valid record) is parsed and validated in one pass by pydantic's
    JSON parser; anything it refuses is judged again step by step, so the reasons given
    for bad data name the first thing wrong (not UTF-8, not JSON, not an object, fields).
    ``now``, when given, is the time "in the future" is judged against.
    """
    try:
        return Verdict(Transaction.model_validate_json(raw, context=_context(clock, now)), ())
    except ValidationError:
        pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Verdict(None, (Violation("(record)", f"is not UTF-8 text ({exc.reason})"),))
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Verdict(None, (Violation("(record)", f"is not JSON ({exc.msg})"),))
    return validate_record(obj, clock=clock, now=now)


@dataclass(frozen=True)
class LineReport:
    line: int
    violations: tuple[Violation, ...]
    is_json_object: bool


def validate_lines(lines: Iterator[bytes], *, clock: Clock = system_clock) -> Iterator[LineReport]:
    """Judge JSON Lines one at a time (bounded memory); blank lines are skipped."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        verdict = validate_bytes(raw.rstrip(b"\r\n"), clock=clock)
        is_object = verdict.ok or not (
            verdict.violations and verdict.violations[0].field == "(record)"
        )
        yield LineReport(number, verdict.violations, is_object)
