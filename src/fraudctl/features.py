"""The one feature implementation, shared by streaming materialization, batch backfill,
training and request-time serving.

Every feature of an event at time ``t`` is a function of the event itself and the same
user's *earlier* accepted events, i.e. those with ``event_ts < t`` (strictly: an event
never sees itself or anything at the same instant).  Windows are half-open,
``[t - w, t)``.  The definitions (also in ``docs/features.md``):

==========================  ===============================================================
txn_count_1h                earlier events in [t-1h, t)
amount_sum_24h              sum of earlier amounts in [t-24h, t)
amount_avg_24h              mean of earlier amounts in [t-24h, t); 0 when there are none
distinct_countries_24h      distinct countries of earlier events in [t-24h, t)
distinct_devices_24h        distinct devices of earlier events in [t-24h, t)
seconds_since_last_txn      t minus the latest earlier event; -1 when there is none
country_seen_24h            1 if the event's country occurs in [t-24h, t), else 0
device_seen_24h             1 if the event's device occurs in [t-24h, t), else 0
amount_to_avg_24h           amount / max(amount_avg_24h, 0.01); 0 when no earlier event
==========================  ===============================================================

A :class:`UserWindow` keeps what these need (the user's events of the last 24 hours
plus an allowance for late arrivals), so the online store holds one small window per
user and a request is scored from it with exactly the same code.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, overload

FEATURES_VERSION = "1"
HOUR = 3600.0
DAY = 24 * HOUR
# Events may arrive up to this much later than the newest one seen for their user and
# still get exact features; older stragglers are computed from what the window kept.
ALLOWED_LATENESS_S = HOUR
MIN_AVERAGE = 0.01  # a cent: keeps amount_to_avg_24h finite when earlier amounts were ~0

FEATURE_NAMES: tuple[str, ...] = (
    "txn_count_1h",
    "amount_sum_24h",
    "amount_avg_24h",
    "distinct_countries_24h",
    "distinct_devices_24h",
    "seconds_since_last_txn",
    "country_seen_24h",
    "device_seen_24h",
    "amount_to_avg_24h",
)


class Txn(NamedTuple):
    """What the features need of one event (its id makes adding it idempotent)."""

    ts: float  # event time, seconds since the epoch (UTC)
    amount: float
    country: str
    device: str
    event_id: str = ""


def compute_features(history: Sequence[Txn], event: Txn) -> dict[str, float]:
    """Features of ``event`` given the user's events ``history`` sorted by time.

    ``history`` may hold events at or after ``event.ts`` (late or replayed data): only
    those strictly before it count.
    """
    if isinstance(history, UserWindow):
        times, amounts = history.times, history.amounts
        countries, devices = history.countries, history.devices
    else:
        times = [h.ts for h in history]
        amounts = [h.amount for h in history]
        countries = [h.country for h in history]
        devices = [h.device for h in history]
    t = event.ts
    end = bisect.bisect_left(times, t)  # first index with ts >= t: excluded
    start_day = bisect.bisect_left(times, t - DAY, 0, end)
    start_hour = bisect.bisect_left(times, t - HOUR, start_day, end)
    count_day = end - start_day
    # Slices of plain lists: summed and counted in C, in time order.
    amount_sum = sum(amounts[start_day:end])
    average = amount_sum / count_day if count_day else 0.0
    day_countries = set(countries[start_day:end])
    day_devices = set(devices[start_day:end])
    return {
        "txn_count_1h": float(end - start_hour),
        "amount_sum_24h": amount_sum,
        "amount_avg_24h": average,
        "distinct_countries_24h": float(len(day_countries)),
        "distinct_devices_24h": float(len(day_devices)),
        "seconds_since_last_txn": t - times[end - 1] if end else -1.0,
        "country_seen_24h": 1.0 if event.country in day_countries else 0.0,
        "device_seen_24h": 1.0 if event.device in day_devices else 0.0,
        "amount_to_avg_24h": event.amount / max(average, MIN_AVERAGE) if count_day else 0.0,
    }


@dataclass
class UserWindow(Sequence[Txn]):
    """One user's recent events, sorted by time, pruned to what features can still use."""

    events: list[Txn] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    # Columns of ``events`` (what the features aggregate), kept in step with it.
    amounts: list[float] = field(default_factory=list, repr=False, compare=False)
    countries: list[str] = field(default_factory=list, repr=False, compare=False)
    devices: list[str] = field(default_factory=list, repr=False, compare=False)
    # The JSON form, kept until the window changes (written online and to snapshots).
    _json: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.times) != len(self.events):
            self.events.sort()
            self.times = [e.ts for e in self.events]
        self.amounts = [e.amount for e in self.events]
        self.countries = [e.country for e in self.events]
        self.devices = [e.device for e in self.events]

    def __len__(self) -> int:
        return len(self.events)

    @overload
    def __getitem__(self, index: int) -> Txn: ...

    @overload
    def __getitem__(self, index: slice) -> list[Txn]: ...

    def __getitem__(self, index: int | slice) -> Txn | list[Txn]:
        return self.events[index]

    @property
    def newest(self) -> float | None:
        return self.times[-1] if self.times else None

    def add(self, txn: Txn) -> bool:
        """Insert in time order (late events included), then drop what no event that can
        still arrive on time will need.  An event already in the window (same id) is not
        added again: re-delivered data changes nothing.  Returns whether it was added."""
        if txn.event_id and any(e.event_id == txn.event_id for e in self._same_time(txn.ts)):
            return False
        index = bisect.bisect_right(self.times, txn.ts)
        self.times.insert(index, txn.ts)
        self.events.insert(index, txn)
        self.amounts.insert(index, txn.amount)
        self.countries.insert(index, txn.country)
        self.devices.insert(index, txn.device)
        self._json = None
        self.prune()
        return True

    def _same_time(self, ts: float) -> list[Txn]:
        lo = bisect.bisect_left(self.times, ts)
        hi = bisect.bisect_right(self.times, ts, lo)
        return self.events[lo:hi]

    def prune(self) -> None:
        if not self.times:
            return
        keep_from = bisect.bisect_left(self.times, self.times[-1] - DAY - ALLOWED_LATENESS_S)
        if keep_from:
            for column in (self.times, self.events, self.amounts, self.countries, self.devices):
                del column[:keep_from]
            self._json = None

    def features(self, event: Txn) -> dict[str, float]:
        return compute_features(self, event)

    def to_json(self) -> str:
        if self._json is None:
            self._json = json.dumps([list(e) for e in self.events], separators=(",", ":"))
        return self._json

    @classmethod
    def from_json(cls, text: str | None) -> UserWindow:
        if not text:
            return cls()
        events = [
            Txn(float(row[0]), float(row[1]), str(row[2]), str(row[3]), str(row[4]))
            if len(row) > 4
            else Txn(float(row[0]), float(row[1]), str(row[2]), str(row[3]))
            for row in json.loads(text)
        ]
        return cls(events, [e.ts for e in events])

    @classmethod
    def of(cls, events: Iterable[Txn]) -> UserWindow:
        window = cls(sorted(events))
        window.prune()
        return window
