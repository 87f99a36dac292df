"""The one feature implementation against an independent brute-force reading of the
definitions (written from docs/features.md, sharing no code with fraudctl.features)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudctl.features import (
    ALLOWED_LATENESS_S,
    FEATURE_NAMES,
    Txn,
    UserWindow,
    compute_features,
)

COUNTRIES = ["US", "CA", "GB", "DE"]
DEVICES = ["ios", "android", "web"]


def brute_force(all_events: list[Txn], event: Txn) -> dict[str, float]:
    t = event.ts
    earlier = [e for e in all_events if e.ts < t]
    hour = [e for e in earlier if t - 3600 <= e.ts]
    day = [e for e in earlier if t - 86400 <= e.ts]
    total = 0.0
    for e in day:
        total += e.amount
    avg = total / len(day) if day else 0.0
    return {
        "txn_count_1h": float(len(hour)),
        "amount_sum_24h": total,
        "amount_avg_24h": avg,
        "distinct_countries_24h": float(len({e.country for e in day})),
        "distinct_devices_24h": float(len({e.device for e in day})),
        "seconds_since_last_txn": t - max(e.ts for e in earlier) if earlier else -1.0,
        "country_seen_24h": float(any(e.country == event.country for e in day)),
        "device_seen_24h": float(any(e.device == event.device for e in day)),
        "amount_to_avg_24h": event.amount / max(avg, 0.01) if day else 0.0,
    }


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-9 * max(1, abs(b[k])) for k in a)


# Times on a coarse grid so that window edges (exactly 1 h / 24 h back, equal times) occur.
times = st.integers(0, 3 * 24 * 12).map(lambda i: 1_700_000_000.0 + i * 300.0)
txns = st.builds(
    Txn,
    times,
    st.floats(0, 5000, allow_nan=False),
    st.sampled_from(COUNTRIES),
    st.sampled_from(DEVICES),
)


@settings(max_examples=300)
@given(st.lists(txns, max_size=60), txns)
def test_features_match_the_definitions(history: list[Txn], event: Txn) -> None:
    expected = brute_force(history, event)
    assert same(compute_features(sorted(history), event), expected)
    assert tuple(expected) == FEATURE_NAMES


def test_window_edges_are_half_open() -> None:
    t = 1_700_100_000.0
    history = [
        Txn(t - 86400, 10, "US", "ios"),  # exactly 24 h back: in
        Txn(t - 86400.5, 99, "GB", "web"),  # just outside
        Txn(t - 3600, 20, "US", "ios"),  # exactly 1 h back: in the hour
        Txn(t, 30, "DE", "web"),  # same instant: not earlier
    ]
    features = compute_features(sorted(history), Txn(t, 15, "US", "android"))
    assert features["txn_count_1h"] == 1
    assert features["amount_sum_24h"] == 30
    assert features["amount_avg_24h"] == 15
    assert features["distinct_countries_24h"] == 1
    assert features["seconds_since_last_txn"] == 3600
    assert features["country_seen_24h"] == 1
    assert features["device_seen_24h"] == 0
    assert features["amount_to_avg_24h"] == 1


def test_no_history() -> None:
    features = compute_features([], Txn(1.0, 5.0, "US", "ios"))
    assert features["seconds_since_last_txn"] == -1
    assert features["amount_avg_24h"] == 0
    assert features["amount_to_avg_24h"] == 0


@pytest.mark.parametrize("seed", range(5))
def test_streaming_windows_give_the_brute_force_features(seed: int) -> None:
    """Events arriving in order, with some late ones within the allowance, scored from
    pruned per-user windows (as materialize and serving do), equal the brute force over
    every earlier event."""
    rng = random.Random(seed)
    t = 1_700_000_000.0
    arrivals: list[Txn] = []
    for _ in range(1500):
        t += rng.expovariate(1 / 240)  # one user, ~4-minute gaps, ~4 days
        late = rng.random() < 0.1
        ts = t - rng.uniform(0, ALLOWED_LATENESS_S) if late else t
        arrivals.append(Txn(ts, rng.uniform(1, 500), rng.choice(COUNTRIES), rng.choice(DEVICES)))
    window = UserWindow()
    seen: list[Txn] = []
    for txn in arrivals:
        assert same(window.features(txn), brute_force(seen, txn))
        window.add(txn)
        seen.append(txn)
    restored = UserWindow.from_json(window.to_json())
    assert restored.events == window.events
    assert restored.times == window.times
    # pruned to a day and the lateness allowance behind the newest event
    assert window.times[0] >= window.times[-1] - 86400 - ALLOWED_LATENESS_S
    assert len(window) < len(seen) / 3
