"""A realistic, reproducible synthetic transaction stream.

A population of users, each with a home country, a usual device and a spending level,
makes ordinary purchases.  Fraud arrives as a few recognisable *patterns* that unfold
over minutes, so a model can find them only through per-user history (the features)
plus the event itself:

- **account takeover**: a stranger's device in a foreign country, then a burst of high
  amounts a few tens of seconds apart;
- **card testing**: a burst of tiny amounts seconds apart, mostly from the web.

Ordinary users also travel, switch devices and spend big now and then, so no raw field
alone gives fraud away.

Events are laid on a fixed grid of event times (``start + i / rate``); a pattern's next
step takes the first grid slot at or after its due time.  The sequence depends only on
the seed and the options, so the same seed gives the same events apart from the
timestamps, which are anchored at ``start``.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from fraudctl.contract import COUNTRIES, DEVICES, MAX_AMOUNT
from fraudctl.errors import UsageError

COUNTRY_WEIGHTS = (0.35, 0.10, 0.12, 0.12, 0.10, 0.13, 0.08)  # US CA GB DE FR IN BR
DEVICE_WEIGHTS = (0.42, 0.40, 0.18)  # ios android web
TRAVEL_RATE = 0.04  # ordinary events abroad
OTHER_DEVICE_RATE = 0.10  # ordinary events on a device other than the usual one
BIG_SPEND_RATE = 0.02  # ordinary events at 6-25x the user's usual amount
TAKEOVER_SHARE = 0.6  # of fraud patterns; the rest is card testing
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
WARM_UP_S = 800.0  # longer than the longest fraud pattern
DRAW_BLOCK = 1024  # slots drawn at once
_PAIRS = [a + b for a in CROCKFORD for b in CROCKFORD]  # every 10-bit value, 2 chars


def ulid_from(ms: int, randomness: int) -> str:
    """The 26-character ULID of a millisecond timestamp and 80 random bits: the top
    3 bits, then twelve 10-bit pairs from a table, then the last 5 bits."""
    v = (ms << 80) | randomness
    t = _PAIRS
    return (
        CROCKFORD[v >> 125]
        + t[(v >> 115) & 1023] + t[(v >> 105) & 1023] + t[(v >> 95) & 1023]
        + t[(v >> 85) & 1023] + t[(v >> 75) & 1023] + t[(v >> 65) & 1023]
        + t[(v >> 55) & 1023] + t[(v >> 45) & 1023] + t[(v >> 35) & 1023]
        + t[(v >> 25) & 1023] + t[(v >> 15) & 1023] + t[(v >> 5) & 1023]
        + CROCKFORD[v & 31]
    )  # fmt: skip


@dataclass(frozen=True)
class DriftSpec:
    """Shifts of named distributions, e.g. ``amount=1.8,country=BR:0.5``."""

    amount: float = 1.0
    country: tuple[str, float] | None = None
    device: tuple[str, float] | None = None
    fraud: float | None = None

    @classmethod
    def parse(cls, spec: str | None) -> DriftSpec:
        """``amount=F`` scales amounts; ``country=CC:P`` / ``device=D:P`` send a share P of
        events to that country / device; ``fraud=F`` sets the fraud rate."""
        if not spec:
            return cls()
        values: dict[str, object] = {}
        for part in spec.split(","):
            name, sep, raw = part.strip().partition("=")
            try:
                if not sep:
                    raise ValueError("expected NAME=VALUE")
                if name == "amount":
                    values["amount"] = _positive(float(raw))
                elif name == "fraud":
                    values["fraud"] = _share(float(raw))
                elif name in ("country", "device"):
                    target, _, share = raw.partition(":")
                    allowed = COUNTRIES if name == "country" else DEVICES
                    if target not in allowed:
                        raise ValueError(f"{target!r} is not one of {', '.join(allowed)}")
                    values[name] = (target, _share(float(share or "1")))
                else:
                    raise ValueError("known names: amount, country, device, fraud")
            except ValueError as exc:
                raise UsageError(
                    f"--drift {spec!r}: bad part {part!r}: {exc}",
                    hint="e.g. --drift amount=1.8,country=BR:0.5,device=web:0.6,fraud=0.05",
                ) from exc
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> str:
        parts = []
        if self.amount != 1.0:
            parts.append(f"amount={self.amount:g}")
        for name in ("country", "device"):
            target = getattr(self, name)
            if target:
                parts.append(f"{name}={target[0]}:{target[1]:g}")
        if self.fraud is not None:
            parts.append(f"fraud={self.fraud:g}")
        return ",".join(parts) or "none"


def _positive(value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive number")
    return value


def _share(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError("must be between 0 and 1")
    return value


class Event(NamedTuple):
    event_id: str
    user_id: str
    transaction_amount: float
    country: str
    device: str
    event_ts: float  # seconds since the epoch, UTC
    label: int
    pattern: str  # normal | takeover | card_testing
    event_ts_text: str  # event_ts in the canonical wire form


@dataclass(frozen=True)
class User:
    home: str
    device: str
    spend: float  # median amount


@dataclass
class _Step:
    due: float
    user: int
    amount: float
    country: str
    device: str
    pattern: str


@dataclass
class GeneratorOptions:
    users: int = 10_000
    fraud_rate: float = 0.02
    seed: int = 0
    drift: DriftSpec = field(default_factory=DriftSpec)
    # The users (homes, devices, spend, activity) from their own seed: new traffic of the
    # same people. None: drawn from ``seed``, before the events (the original stream).
    population_seed: int | None = None

    def __post_init__(self) -> None:
        if self.users < 1:
            raise UsageError(f"--users {self.users}: need at least 1 user")
        if not 0 <= self.fraud_rate <= 0.5:
            raise UsageError(f"--fraud-rate {self.fraud_rate}: must be between 0 and 0.5")


class TransactionGenerator:
    def __init__(
        self,
        options: GeneratorOptions,
        start: float,
        rate: float,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        """Events on the grid ``start + i / rate``.

        ``shard=(k, n)``: this generator makes the events of users ``k, k+n, k+2n, …``
        only, from a random stream of its own, so ``n`` generators in ``n`` processes
        together make one stream in which every user's events stay in order.
        """
        self.options = options
        self.start = start
        self.interval = 1.0 / rate
        self.rng = random.Random(options.seed)
        people = self.rng
        if options.population_seed is not None:
            people = random.Random(options.population_seed)
        self._random = self.rng.random
        self.index = 0
        self._pending: list[tuple[float, int, _Step]] = []  # heap by due time
        self._sequence = itertools.count()
        fraud_rate = options.drift.fraud if options.drift.fraud is not None else options.fraud_rate
        # Mean steps per pattern: takeover 1 + 2..5 (mean 4.5), card testing 4..11 (mean 7.5).
        mean_steps = TAKEOVER_SHARE * 4.5 + (1 - TAKEOVER_SHARE) * 7.5
        self._pattern_start = fraud_rate / mean_steps
        self.users = self._population(people)
        # A few users are much more active than the rest.
        self._weights = [people.paretovariate(1.5) for _ in range(options.users)]
        self._cum_weights = list(_accumulate(self._weights))
        self._total_weight = self._cum_weights[-1]
        self._user_ids = [f"user-{i}" for i in range(options.users)]
        index, count = shard
        self._shard_users: Sequence[int] = range(index, options.users, count)
        if count > 1:
            self._cum_weights = list(_accumulate([self._weights[u] for u in self._shard_users]))
            self._total_weight = self._cum_weights[-1]
            self.rng = random.Random(f"{options.seed}/{index}/{count}")
            self._random = self.rng.random
        self._np = np.random.default_rng([options.seed, index, count])
        self._np_cum = np.asarray(self._cum_weights)
        self._np_shard = np.asarray(self._shard_users, dtype=np.int64)
        self._np_home = np.array([COUNTRIES.index(u.home) for u in self.users], dtype=np.int64)
        self._np_device = np.array([DEVICES.index(u.device) for u in self.users], dtype=np.int64)
        self._np_spend = np.array([u.spend for u in self.users])
        self._buffer: list[Event] = []
        self._taken = 0
        self._warm_start(rate)

    def _warm_start(self, rate: float) -> None:
        """Begin in the steady state: patterns that started before the first event are
        already under way, so the fraud share is right from the first minute, not only
        after the longest pattern has had time to play out."""
        starts = round(self._pattern_start * WARM_UP_S * rate)
        for _ in range(starts):
            began = self.start - self.rng.uniform(0, WARM_UP_S)
            self._start_pattern(began)
        self._pending = [item for item in self._pending if item[0] >= self.start]
        heapq.heapify(self._pending)

    def _population(self, rng: random.Random) -> list[User]:
        return [
            User(
                home=rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0],
                device=rng.choices(DEVICES, DEVICE_WEIGHTS)[0],
                spend=math.exp(rng.gauss(math.log(35.0), 0.7)),
            )
            for _ in range(self.options.users)
        ]

    def _pick_user(self) -> int:
        pick = bisect.bisect(self._cum_weights, self._random() * self._total_weight)
        return self._shard_users[pick]

    def _foreign(self, home: str) -> str:
        while True:
            country = self.rng.choice(COUNTRIES)
            if country != home:
                return country

    def _other_device(self, usual: str) -> str:
        while True:
            device = self.rng.choice(DEVICES)
            if device != usual:
                return device

    def _start_pattern(self, now: float) -> _Step:
        rng = self.rng
        victim = self._pick_user()
        user = self.users[victim]
        steps: list[_Step] = []
        if rng.random() < TAKEOVER_SHARE:
            country, device = self._foreign(user.home), self._other_device(user.device)
            due = now
            # A modest first charge, then a burst of high amounts.
            steps.append(_Step(due, victim, rng.uniform(20, 150), country, device, "takeover"))
            for _ in range(rng.randint(2, 5)):
                due += rng.uniform(15, 150)
                amount = rng.uniform(250, 2500) * rng.choice((1.0, 1.0, 1.6))
                steps.append(_Step(due, victim, amount, country, device, "takeover"))
        else:
            device = "web" if rng.random() < 0.8 else user.device
            country = user.home if rng.random() < 0.6 else self._foreign(user.home)
            due = now
            for _ in range(rng.randint(4, 11)):
                steps.append(
                    _Step(due, victim, rng.uniform(0.5, 9.99), country, device, "card_testing")
                )
                due += rng.uniform(3, 40)
        for step in steps[1:]:
            heapq.heappush(self._pending, (step.due, next(self._sequence), step))
        return steps[0]

    def next(self) -> Event:
        """The event of the next grid slot."""
        return self.batch(1)[0]

    def batch(self, n: int) -> list[Event]:
        """The events of the next ``n`` grid slots.

        Slots are drawn in fixed blocks, so the events never depend on how a caller
        slices the stream (a paced run asks for whatever is due at each tick)."""
        out: list[Event] = []
        while n > 0:
            if self._taken == len(self._buffer):
                self._buffer, self._taken = self._draw(DRAW_BLOCK), 0
            take = min(n, len(self._buffer) - self._taken)
            out += self._buffer[self._taken : self._taken + take]
            self._taken += take
            n -= take
        return out

    def _draw(self, n: int) -> list[Event]:
        """Ordinary traffic is drawn for all ``n`` slots at once; then, slot by slot, a due
        step of a running fraud pattern, or a newly starting pattern, takes a slot over."""
        gen, drift = self._np, self.options.drift
        first = self.index
        self.index += n
        ts = self.start + (first + np.arange(n)) * self.interval
        picked = np.searchsorted(self._np_cum, gen.random(n) * self._total_weight, side="right")
        users = self._np_shard[np.minimum(picked, len(self._np_shard) - 1)]
        home = self._np_home[users]
        country = np.where(
            gen.random(n) < TRAVEL_RATE, (home + gen.integers(1, len(COUNTRIES), n)) % 7, home
        )
        usual = self._np_device[users]
        device = np.where(
            gen.random(n) < OTHER_DEVICE_RATE, (usual + gen.integers(1, 3, n)) % 3, usual
        )
        amount = self._np_spend[users] * np.exp(gen.normal(0.0, 0.6, n))
        amount = np.where(gen.random(n) < BIG_SPEND_RATE, amount * gen.uniform(6, 25, n), amount)
        pattern_draw = gen.random(n)
        randomness = gen.integers(0, 1 << 40, (n, 2), dtype=np.int64)

        users_l, country_l, device_l = users.tolist(), country.tolist(), device.tolist()
        amount_l, ts_l = amount.tolist(), ts.tolist()
        labels = [0] * n
        patterns = ["normal"] * n
        pending, q = self._pending, self._pattern_start
        for i in range(n):
            slot_ts = ts_l[i]
            if pending and pending[0][0] <= slot_ts:
                step = heapq.heappop(pending)[2]
            elif pattern_draw[i] < q:
                step = self._start_pattern(slot_ts)
            else:
                continue
            users_l[i], amount_l[i] = step.user, step.amount
            country_l[i] = COUNTRIES.index(step.country)
            device_l[i] = DEVICES.index(step.device)
            labels[i], patterns[i] = 1, step.pattern

        amounts = np.minimum(np.asarray(amount_l) * drift.amount, MAX_AMOUNT)
        countries = np.asarray(country_l)
        devices = np.asarray(device_l)
        if drift.country is not None:
            target = COUNTRIES.index(drift.country[0])
            countries = np.where(gen.random(n) < drift.country[1], target, countries)
        if drift.device is not None:
            target = DEVICES.index(drift.device[0])
            devices = np.where(gen.random(n) < drift.device[1], target, devices)
        ids = _ulids((ts * 1000).astype(np.int64), randomness)
        texts = _timestamps(ts)
        user_ids = self._user_ids
        return [
            Event(event_id, user_ids[u], a, COUNTRIES[c], DEVICES[d], t, label, pattern, text)
            for event_id, u, a, c, d, t, label, pattern, text in zip(
                ids, users_l, np.round(amounts, 2).tolist(), countries.tolist(),
                devices.tolist(), ts_l, labels, patterns, texts, strict=True,
            )
        ]  # fmt: skip


_CROCKFORD_BYTES = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)
_SHIFTS_10 = np.arange(45, -1, -5, dtype=np.int64)  # 10 chars of a 50-bit field
_SHIFTS_8 = np.arange(35, -1, -5, dtype=np.int64)  # 8 chars of a 40-bit field


def _ulids(ms: np.ndarray, randomness: np.ndarray) -> list[str]:
    """ULIDs for many timestamps at once: 10 chars of time, 16 of randomness."""
    n = len(ms)
    chars = np.empty((n, 26), dtype=np.uint8)
    chars[:, :10] = _CROCKFORD_BYTES[(ms[:, None] >> _SHIFTS_10) & 31]
    chars[:, 10:18] = _CROCKFORD_BYTES[(randomness[:, :1] >> _SHIFTS_8) & 31]
    chars[:, 18:] = _CROCKFORD_BYTES[(randomness[:, 1:] >> _SHIFTS_8) & 31]
    raw = chars.tobytes()
    return [raw[i : i + 26].decode() for i in range(0, 26 * n, 26)]


def _timestamps(ts: np.ndarray) -> list[str]:
    micros = np.round(ts * 1_000_000).astype("datetime64[us]")
    return [text + "Z" for text in np.datetime_as_string(micros, unit="us").tolist()]


def _accumulate(values: list[float]) -> list[float]:
    total = 0.0
    out = []
    for value in values:
        total += value
        out.append(total)
    return out


_SECOND_PREFIX: dict[int, str] = {}


def format_ts(ts: float) -> str:
    """Canonical UTC wire form with microseconds; the per-second prefix is cached."""
    micros = round(ts * 1_000_000)
    second, fraction = divmod(micros, 1_000_000)
    prefix = _SECOND_PREFIX.get(second)
    if prefix is None:
        if len(_SECOND_PREFIX) > 4096:
            _SECOND_PREFIX.clear()
        prefix = _SECOND_PREFIX[second] = datetime.fromtimestamp(second, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return f"{prefix}.{fraction:06d}Z"


def transaction_json(event: Event) -> bytes:
    """The wire form of a live event (label withheld: truth arrives later)."""
    return (
        f'{{"event_id":"{event.event_id}","user_id":"{event.user_id}",'
        f'"transaction_amount":{event.transaction_amount!r},"country":"{event.country}",'
        f'"device":"{event.device}","event_ts":"{event.event_ts_text}","label":null}}'
    ).encode()


def label_json(event: Event, label_ts: float) -> bytes:
    label_text = event.event_ts_text if label_ts == event.event_ts else format_ts(label_ts)
    return (
        f'{{"event_id":"{event.event_id}","label":{event.label},'
        f'"event_ts":"{event.event_ts_text}","label_ts":"{label_text}"}}'
    ).encode()


INVALID_KINDS = (
    "bad_ulid",
    "unknown_country",
    "negative_amount",
    "amount_over_max",
    "future_timestamp",
    "missing_field",
    "not_json",
)


def invalid_json(event: Event, rng: random.Random, now: float) -> tuple[bytes, str]:
    """A record that breaks the contract in one of several ways (for DLQ testing)."""
    kind = rng.choice(INVALID_KINDS)
    if kind == "not_json":
        return b"\x00not json: " + event.event_id.encode() + b"\xff", kind
    record: dict[str, object] = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "transaction_amount": event.transaction_amount,
        "country": event.country,
        "device": event.device,
        "event_ts": event.event_ts_text,
        "label": None,
    }
    if kind == "bad_ulid":
        record["event_id"] = event.event_id[:20] + "-bad"
    elif kind == "unknown_country":
        record["country"] = "XX"
    elif kind == "negative_amount":
        record["transaction_amount"] = -round(rng.uniform(0.01, 500), 2)
    elif kind == "amount_over_max":
        record["transaction_amount"] = round(MAX_AMOUNT + rng.uniform(0.01, 5000), 2)
    elif kind == "future_timestamp":
        record["event_ts"] = format_ts(now + rng.uniform(3600, 86400))
    else:
        del record[rng.choice(("user_id", "transaction_amount", "country", "device"))]
    import json

    return json.dumps(record, separators=(",", ":")).encode(), kind
