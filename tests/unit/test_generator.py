from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from ulid import ULID

from fraudctl.contract import validate_bytes
from fraudctl.errors import UsageError
from fraudctl.generator import (
    INVALID_KINDS,
    DriftSpec,
    GeneratorOptions,
    TransactionGenerator,
    invalid_json,
    label_json,
    transaction_json,
    ulid_from,
)

START = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
LATER = datetime(2026, 3, 1, tzinfo=UTC)


def clock() -> datetime:
    return datetime(2026, 4, 1, tzinfo=UTC)


def events(n: int, start: float = START, **options: object) -> list:  # type: ignore[type-arg]
    generator = TransactionGenerator(GeneratorOptions(**options), start, 100.0)  # type: ignore[arg-type]
    return [generator.next() for _ in range(n)]


def strip(evs: list) -> list:  # type: ignore[type-arg]
    """The events without their time: what a seed must reproduce."""
    return [(e.user_id, e.transaction_amount, e.country, e.device, e.label) for e in evs]


def mean_amount(evs: list) -> float:  # type: ignore[type-arg]
    return sum(e.transaction_amount for e in evs) / len(evs)


def test_same_seed_same_events_apart_from_timestamps() -> None:
    a, b = events(3000, seed=7), events(3000, seed=7)
    assert a == b
    shifted = events(3000, start=START + 86_400, seed=7)
    assert strip(shifted) == strip(a)
    assert [e.event_id[10:] for e in shifted] == [e.event_id[10:] for e in a]  # randomness
    assert strip(events(3000, seed=8)) != strip(a)


def test_every_event_obeys_the_contract_and_labels_are_withheld() -> None:
    for event in events(5000, fraud_rate=0.1):
        raw = transaction_json(event)
        verdict = validate_bytes(raw, clock=clock)
        assert verdict.ok, (raw, verdict.violations)
        assert json.loads(raw)["label"] is None
        label = json.loads(label_json(event, event.event_ts + 60))
        assert label["event_id"] == event.event_id
        assert label["label"] == event.label


def test_fraud_share_is_near_the_setting_and_comes_from_patterns() -> None:
    generated = events(100_000, fraud_rate=0.02)
    share = sum(e.label for e in generated) / len(generated)
    assert 0.016 <= share <= 0.024
    patterns = Counter(e.pattern for e in generated if e.label)
    assert set(patterns) == {"takeover", "card_testing"}
    small = [e for e in generated if e.pattern == "card_testing"]
    assert all(e.transaction_amount < 10 for e in small)


def test_event_ids_are_valid_unique_ulids_in_time_order() -> None:
    generated = events(2000)
    ids = [e.event_id for e in generated]
    assert len(set(ids)) == len(ids)
    assert [str(ULID.from_str(i)) for i in ids] == ids
    stamps = [ULID.from_str(i).milliseconds for i in ids]
    assert stamps == sorted(stamps)
    rng = random.Random(1)
    for _ in range(500):
        ms, bits = rng.getrandbits(48), rng.getrandbits(80)
        assert ulid_from(ms, bits) == str(ULID.from_int((ms << 80) | bits))


def test_drift_spec_parses_and_shifts_distributions() -> None:
    spec = DriftSpec.parse("amount=1.8,country=BR:0.5,device=web:0.6,fraud=0.1")
    assert spec == DriftSpec(1.8, ("BR", 0.5), ("web", 0.6), 0.1)
    assert spec.describe() == "amount=1.8,country=BR:0.5,device=web:0.6,fraud=0.1"
    base = events(20_000, seed=3)
    drifted = events(20_000, seed=3, drift=DriftSpec.parse("amount=1.8,country=BR:0.5"))
    assert 1.6 < mean_amount(drifted) / mean_amount(base) < 2.0
    br_share = sum(e.country == "BR" for e in drifted) / len(drifted)
    assert 0.5 < br_share < 0.6


@pytest.mark.parametrize(
    "spec", ["amount", "amount=-1", "country=XX:0.5", "device=web:2", "colour=red", "fraud=abc"]
)
def test_bad_drift_spec_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError, match="--drift"):
        DriftSpec.parse(spec)


def test_invalid_records_break_the_contract_in_every_advertised_way() -> None:
    rng = random.Random(5)
    seen = set()
    for event in events(400):
        raw, kind = invalid_json(event, rng, clock().timestamp())
        seen.add(kind)
        assert not validate_bytes(raw, clock=clock).ok, (kind, raw)
    assert seen == set(INVALID_KINDS)


def test_a_population_seed_keeps_the_users_and_changes_the_traffic() -> None:
    from fraudctl.generator import GeneratorOptions, TransactionGenerator

    first = TransactionGenerator(GeneratorOptions(seed=1), start=0.0, rate=10)
    again = TransactionGenerator(GeneratorOptions(seed=2, population_seed=1), start=0.0, rate=10)
    other = TransactionGenerator(GeneratorOptions(seed=2), start=0.0, rate=10)
    assert again.users == first.users and other.users != first.users
    assert [e.user_id for e in again.batch(200)] != [e.user_id for e in first.batch(200)]
    # without it, nothing changes: the population still comes from --seed
    same = TransactionGenerator(GeneratorOptions(seed=1, population_seed=None), 0.0, 10)
    assert same.users == first.users
