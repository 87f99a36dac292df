"""The drift module's binning rules, without services."""

from __future__ import annotations

import math

import numpy as np

from fraudctl.adapters.drift_psi import (
    MISSING,
    bin_count,
    feature_drift,
    numeric_labels,
    psi_from_counts,
    quantile_edges,
)


def test_bins_depend_on_the_smaller_window() -> None:
    assert bin_count(100_000, 100_000) == 10
    assert bin_count(100_000, 300) == 6
    assert bin_count(40, 10_000) == 2


def test_a_value_on_an_edge_belongs_to_the_lower_bin_and_missing_has_its_own() -> None:
    edges = [1.0, 2.0]
    assert numeric_labels([0.5, 1.0, 1.5, 2.0, 9.0, math.nan], edges) == [
        "b0", "b0", "b1", "b1", "b2", MISSING,
    ]  # fmt: skip


def test_edges_come_from_the_reference_and_ties_collapse() -> None:
    assert quantile_edges([0.0] * 50 + [1.0] * 50, 10) == [0.0, 1.0]
    rng = np.random.default_rng(1)
    reference = rng.normal(size=5000)
    same = feature_drift("x", reference, rng.normal(size=5000), categorical=False, threshold=0.3)
    moved = feature_drift("x", reference, rng.normal(1, 1, 5000), categorical=False, threshold=0.3)
    assert same.edges == quantile_edges(reference, 10)
    assert same.psi < 0.02
    assert moved.psi > 0.3
    for result in (same, moved):
        assert (
            abs(result.psi - psi_from_counts(result.reference_counts, result.current_counts)) < 1e-9
        )


def test_a_category_only_in_the_current_window_is_smoothed_not_infinite() -> None:
    result = feature_drift("c", ["a"] * 90 + ["b"] * 10, ["a"] * 80 + ["z"] * 20, categorical=True,
                           threshold=0.3)  # fmt: skip
    assert result.bins == ["a", "b", "z"]
    assert result.reference_counts == [90, 10, 0] and result.current_counts == [80, 0, 20]
    assert math.isfinite(result.psi)
    assert abs(result.psi - psi_from_counts(result.reference_counts, result.current_counts)) < 1e-9
