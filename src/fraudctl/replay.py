"""A user's own transactions onto the contract (`fraudctl produce --from FILE`).

One row of a file becomes one event (and, when the row carries its truth, one label):
the columns named by ``--map`` (or carrying the contract's own names) give the fields,
``--set`` gives a field one value for every row, a user id that is not ``user-N`` is
pseudonymised by a keyed hash, a missing event id is derived from the row, and the
event time is kept, shifted to end now, or compressed.  Everything here is pure: the
file is read by an adapter and the events are published by the replay service.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fraudctl.errors import UsageError
from fraudctl.generator import Event, format_ts, ulid_from

FIELDS = ("event_id", "user_id", "transaction_amount", "country", "device", "event_ts")
REQUIRED = FIELDS[1:]  # event_id is derived from the row when the file has none
_USER_ID = re.compile(r"user-[0-9]+")
_COMPRESS = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*[x\u00d7]")  # 60x or 60 times
_TRUE = frozenset({"1", "true", "yes", "y", "t", "fraud"})
_FALSE = frozenset({"0", "false", "no", "n", "f", "legit", "legitimate"})
MILLIS_ABOVE = 1e11  # a number this large is an epoch in milliseconds (year 5138 in s)


class BadRow(ValueError):
    """Why one row cannot become an event: the field and the reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")


def _pairs(option: str, spec: str | None) -> dict[str, str]:
    """``a=b,c=d`` → {a: b, c: d}, every key a contract field."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise UsageError(f"{option} {part!r}: expected FIELD=VALUE", hint=f"e.g. {option} "
                             "transaction_amount=amt,user_id=customer")  # fmt: skip
        if name not in FIELDS:
            raise UsageError(
                f"{option} {part!r}: {name!r} is not a field of the contract",
                hint="fields: " + ", ".join(FIELDS),
            )
        if name in out:
            raise UsageError(f"{option}: {name} is given twice")
        out[name] = value
    return out


@dataclass(frozen=True)
class ColumnMap:
    """Where each contract field comes from: a column of the file or one value."""

    columns: dict[str, str]  # field → column
    constants: dict[str, str]  # field → value for every row
    label: str | None  # column of the true label (0/1); None: no labels
    label_ts: str | None  # column of when the label became known; None: --label-delay

    @classmethod
    def build(
        cls,
        available: list[str],
        *,
        map_spec: str | None = None,
        set_spec: str | None = None,
        label_column: str | None = None,
        label_ts_column: str | None = None,
    ) -> ColumnMap:
        """Check every named column against the file's (``available``); a field neither
        mapped nor set comes from the column of its own name when the file has one."""
        mapped, constants = _pairs("--map", map_spec), _pairs("--set", set_spec)
        both = sorted(set(mapped) & set(constants))
        if both:
            raise UsageError(f"{', '.join(both)}: given by both --map and --set; keep one")
        missing = [c for c in (*mapped.values(), label_column, label_ts_column)
                   if c is not None and c not in available]  # fmt: skip
        if missing:
            raise UsageError(
                f"the file has no column {', '.join(map(repr, missing))}",
                hint="its columns: " + ", ".join(available[:40]),
            )
        columns = dict(mapped)
        for name in FIELDS:
            if name not in columns and name not in constants and name in available:
                columns[name] = name
        unmapped = [n for n in REQUIRED if n not in columns and n not in constants]
        if unmapped:
            raise UsageError(
                f"no column gives {', '.join(unmapped)}",
                hint="name one with --map FIELD=COLUMN (or one value for every row with "
                "--set FIELD=VALUE, e.g. --set country=US); the file's columns: "
                + ", ".join(available[:40]),
            )
        if label_column is None and "label" in available:
            label_column = "label"
        if label_ts_column is not None and label_column is None:
            raise UsageError("--label-ts-column needs a label: give --label-column")
        return cls(columns, constants, label_column, label_ts_column)

    def source_columns(self) -> list[str]:
        """The file's columns a replay reads, in a stable order."""
        wanted = [*self.columns.values(), self.label, self.label_ts]
        return list(dict.fromkeys(c for c in wanted if c is not None))

    def describe(self) -> dict[str, str]:
        out = dict(self.columns)
        out |= {name: f"={value}" for name, value in self.constants.items()}
        if self.label is not None:
            out["label"] = self.label
        if self.label_ts is not None:
            out["label_ts"] = self.label_ts
        return out


@dataclass(frozen=True)
class TimeMode:
    """``keep`` the file's times, ``shift-to-now`` (the last event ends now, spacing
    kept), or ``compress`` by ``factor`` (the file's timeline replayed ``factor`` times
    faster, starting when the run starts: events are published as their time comes)."""

    kind: str  # keep | shift | compress
    factor: float = 1.0

    @classmethod
    def parse(cls, text: str) -> TimeMode:
        cleaned = text.strip().lower()
        if cleaned == "keep":
            return cls("keep")
        if cleaned in ("shift-to-now", "shift"):
            return cls("shift")
        match = _COMPRESS.fullmatch(cleaned)
        if match is None or float(match.group(1)) <= 0:
            raise UsageError(
                f"--time {text!r}: expected keep, shift-to-now or a compression like 60x",
                hint="60x replays an hour of the file in a minute",
            )
        return cls("compress", float(match.group(1)))

    def describe(self) -> str:
        return {"keep": "keep", "shift": "shift-to-now"}.get(self.kind, f"{self.factor:g}x")


@dataclass(frozen=True)
class Timeline:
    """How one run maps a file time onto an event time: ``offset + (t - origin) / factor``.
    Built from the file's first and last time (a first pass) and the run's start."""

    origin: float
    offset: float
    factor: float

    @classmethod
    def plan(cls, mode: TimeMode, first: float, last: float, now: float) -> Timeline:
        if mode.kind == "keep":
            if last > now + 60:
                raise UsageError(
                    f"--time keep: the file's last event is at {format_ts(last)}, in the "
                    "future; events more than a minute ahead break the contract",
                    hint="replay it with --time shift-to-now, or fix the file's times",
                )
            return cls(0.0, 0.0, 1.0)
        if mode.kind == "shift":
            return cls(last, now, 1.0)
        return cls(first, now, mode.factor)

    def stamp(self, t: float) -> float:
        return self.offset + (t - self.origin) / self.factor


def parse_time(value: object) -> float:
    """Seconds since the epoch of an ISO-8601 text (a naive one is UTC; ``Z`` allowed),
    a ``datetime``, or a number of epoch seconds (milliseconds above ``MILLIS_ABOVE``)."""
    if isinstance(value, str):
        text = value.strip()
        if text[4:5] == "-":  # YYYY-…: the common case first
            try:
                return _moment(datetime.fromisoformat(text))
            except ValueError:
                pass
        try:
            return _epoch(float(text))
        except ValueError:
            pass
        try:
            return _moment(datetime.fromisoformat(text))
        except ValueError:
            raise BadRow("event_ts", f"{text[:40]!r} is not a time (ISO-8601 or epoch "
                         "seconds)" if text else "missing") from None  # fmt: skip
    if isinstance(value, datetime):
        return _moment(value)
    if isinstance(value, bool) or value is None:
        raise BadRow("event_ts", "missing" if value is None else "not a time")
    if isinstance(value, int | float):
        return _epoch(float(value))
    return parse_time(str(value))  # a date, a Decimal, …


def _moment(moment: datetime) -> float:
    if moment.tzinfo is None:
        return (moment - _NAIVE_EPOCH).total_seconds()
    return moment.timestamp()


def _epoch(number: float) -> float:
    if not math.isfinite(number):
        raise BadRow("event_ts", f"{number} is not a time")
    return number / 1000 if abs(number) > MILLIS_ABOVE else number


_NAIVE_EPOCH = datetime(1970, 1, 1)


def parse_amount(value: object) -> float:
    if isinstance(value, bool) or value is None or value == "":
        raise BadRow("transaction_amount", "missing" if value in (None, "") else "not a number")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadRow("transaction_amount", f"{str(value)[:40]!r} is not a number") from None


def parse_label(value: object, column: str) -> int | None:
    """0/1, a bool, or a word like true/false/yes/no; empty: the row has no label."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        if value in (0, 1):
            return int(value)
        raise BadRow("label", f"{column}={value!r} is not 0 or 1")
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _TRUE or text in ("1.0",):
        return 1
    if text in _FALSE or text in ("0.0",):
        return 0
    raise BadRow("label", f"{column}={str(value)[:40]!r} is not 0 or 1")


def pseudonym(value: object, key: bytes) -> tuple[str, bool]:
    """A ``user-N`` id as it is; anything else → ``user-`` + 64 bits of a keyed BLAKE2b
    of its text (stable for the same key, one-way without it). Returns (id, hashed)."""
    if value is None or (text := str(value).strip()) == "":
        raise BadRow("user_id", "missing")
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))  # a numeric id read as a float (Parquet, JSON)
    if _USER_ID.fullmatch(text):
        return text, False
    digest = hashlib.blake2b(text.encode(), digest_size=8, key=key).digest()
    return f"user-{int.from_bytes(digest, 'big')}", True


def derived_event_id(file_time: float, row: int, values: tuple[object, ...]) -> str:
    """The ULID of a row without an event id: its time from the row's own (file) time,
    its randomness from the row's number and values, so a replay of the same file gives
    the same ids (and materialize's exactly-once keeps a second replay out)."""
    digest = hashlib.blake2b(repr((row, values)).encode(), digest_size=10).digest()
    return ulid_from(max(int(file_time * 1000), 0), int.from_bytes(digest, "big"))


@dataclass
class RowMapper:
    """Turns rows (a dict per row, keyed by the file's columns) into events."""

    columns: ColumnMap
    timeline: Timeline
    key: bytes = b""
    label_delay: float = 0.0
    last_hashed: bool = field(default=False, init=False)  # the last event's id was hashed

    def __post_init__(self) -> None:
        # Per field: the column to read, or None and the one value for every row.
        self._source = {name: (self.columns.columns.get(name), self.columns.constants.get(name))
                        for name in FIELDS}  # fmt: skip

    def _get(self, values: dict[str, Any], name: str) -> Any:
        column, constant = self._source[name]
        return values.get(column) if column is not None else constant

    def event(self, row: int, values: dict[str, Any]) -> tuple[Event, float | None]:
        """The row's event (label -1 when it has none) and when its label is due (event
        time; ``None``: no label). Raises :class:`BadRow`."""
        get = self._get
        file_time = parse_time(get(values, "event_ts"))
        ts = self.timeline.stamp(file_time)
        user, hashed = pseudonym(get(values, "user_id"), self.key)
        self.last_hashed = hashed
        amount = parse_amount(get(values, "transaction_amount"))
        country = _text(get(values, "country"), "country").upper()
        device = _text(get(values, "device"), "device").lower()
        event_id = get(values, "event_id")
        if event_id is None or str(event_id).strip() == "":
            event_id = derived_event_id(file_time, row, (user, amount, country, device))
        label_column = self.columns.label
        label = None if label_column is None else parse_label(values.get(label_column),
                                                              label_column)  # fmt: skip
        due = None
        if label is not None:
            if self.columns.label_ts is None:
                due = ts + self.label_delay
            else:
                raw = values.get(self.columns.label_ts)
                try:
                    due = self.timeline.stamp(parse_time(raw))
                except BadRow:
                    raise BadRow("label_ts", f"{str(raw)[:40]!r} is not a time") from None
                if due < ts:
                    raise BadRow("label_ts", "before the event: a label cannot be known "
                                 "before its transaction")  # fmt: skip
        event = Event(str(event_id).strip(), user, amount, country, device, ts,
                      -1 if label is None else label, "replay", format_ts(ts))  # fmt: skip
        return event, due


def _text(value: object, name: str) -> str:
    if value is None or str(value).strip() == "":
        raise BadRow(name, "missing")
    return str(value).strip()
