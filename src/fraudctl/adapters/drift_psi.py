"""Population stability (PSI) per monitored feature, with bins fixed from the reference
and every number reported, so anyone can recompute the result from the JSON.

The PSI itself is Evidently's PSI stat test; fraudctl decides the bins and hands Evidently
the binned values as categories — for the number and for the HTML report alike, so the
report shows the same bins, counts, PSI, threshold and verdict as ``--json``
(Evidently's own numeric binning uses equal-width edges over both windows together,
which moves with the window being judged):

- **numeric** features: quantile edges of the *reference* only, inner edges
  ``quantile(reference, k / n)`` for ``k = 1 … n - 1`` (inverted CDF: the smallest
  reference value with at least ``k / n`` of the reference at or below it, so every edge
  is an observed value), duplicates dropped (a feature
  with many equal values gets fewer bins); bin *i* holds ``edges[i-1] < x ≤ edges[i]``
  with open outer ends.  ``n`` depends on the sample size (``bin_count``): up to 10, and
  never fewer than ``MIN_ROWS_PER_BIN`` reference/current rows per bin on average.
- **categorical** features: one bin per category seen in either window.
- a value missing (NaN/None) goes to its own ``<missing>`` bin.

Evidently then drops bins empty in *both* windows, turns counts into shares and replaces
an empty share by ``min(nonzero shares) / 10**6`` when that minimum is ≤ 0.0001, else by
0.0001 (separately per window), and sums ``(ref - cur) * ln(ref / cur)``.
``psi_from_counts`` is the same rule written out in NumPy, used by the tests as the
independent check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MAX_BINS = 10
MIN_ROWS_PER_BIN = 50
MISSING = "<missing>"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # "numeric" | "categorical"
    psi: float
    bins: list[str]  # one label per bin, in order
    edges: list[float] | None  # numeric: the inner edges from the reference
    reference_counts: list[int]
    current_counts: list[int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bin_count(reference_rows: int, current_rows: int) -> int:
    """Up to ``MAX_BINS``, fewer for small windows so a bin averages at least
    ``MIN_ROWS_PER_BIN`` rows in the smaller window (at least 2)."""
    return max(2, min(MAX_BINS, min(reference_rows, current_rows) // MIN_ROWS_PER_BIN))


def quantile_edges(reference: Any, bins: int) -> list[float]:
    import numpy as np

    values = np.asarray(reference, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return []
    inner = np.quantile(values, [k / bins for k in range(1, bins)], method="inverted_cdf")
    return [float(e) for e in np.unique(inner)]


def numeric_labels(values: Any, edges: Sequence[float]) -> list[str]:
    """The bin label of each value: ``b<i>`` (``edges[i-1] < x ≤ edges[i]``) or missing."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    index = np.searchsorted(np.asarray(edges, dtype=float), array, side="left")
    labels = zip(array.tolist(), index.tolist(), strict=True)
    return [MISSING if math.isnan(x) else f"b{i}" for x, i in labels]


def numeric_bin_names(edges: Sequence[float]) -> list[str]:
    return [f"b{i}" for i in range(len(edges) + 1)]


def categorical_labels(values: Any) -> list[str]:
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    return [MISSING if missing(v) else str(v) for v in values]


def feature_drift(
    feature: str, reference: Any, current: Any, *, categorical: bool, threshold: float
) -> FeatureDrift:
    """PSI of one feature between two windows (through Evidently's PSI stat test)."""
    from collections import Counter

    if categorical:
        ref_labels = categorical_labels(reference)
        cur_labels = categorical_labels(current)
        names = sorted(set(ref_labels) | set(cur_labels))
        edges = None
    else:
        edges = quantile_edges(reference, bin_count(len(reference), len(current)))
        ref_labels = numeric_labels(reference, edges)
        cur_labels = numeric_labels(current, edges)
        names = numeric_bin_names(edges)
        if MISSING in ref_labels or MISSING in cur_labels:
            names.append(MISSING)
    ref_counts = Counter(ref_labels)
    cur_counts = Counter(cur_labels)
    psi = evidently_psi(ref_labels, cur_labels, threshold)
    return FeatureDrift(
        feature,
        "categorical" if categorical else "numeric",
        psi,
        names,
        edges,
        [ref_counts.get(n, 0) for n in names],
        [cur_counts.get(n, 0) for n in names],
    )


def evidently_psi(
    reference_labels: list[str], current_labels: list[str], threshold: float
) -> float:
    import pandas as pd
    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    result = psi_stat_test(
        pd.Series(reference_labels, dtype=object),
        pd.Series(current_labels, dtype=object),
        ColumnType.Categorical,
        threshold,
    )
    return float(result.drift_score)


def psi_from_counts(reference_counts: Sequence[int], current_counts: Sequence[int]) -> float:
    """PSI from two windows' counts per bin, by the rule in the module's docstring."""
    import numpy as np

    ref = np.asarray(reference_counts, dtype=float)
    cur = np.asarray(current_counts, dtype=float)
    keep = (ref > 0) | (cur > 0)
    ref_share = ref[keep] / ref.sum()
    cur_share = cur[keep] / cur.sum()
    for share in (ref_share, cur_share):
        smallest = share[share > 0].min()
        share[share == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return float(np.sum((ref_share - cur_share) * np.log(ref_share / cur_share)))


def binned(frame: Any, features: Sequence[Mapping[str, Any]]) -> Any:
    """Each row of ``frame`` as the bin label of each feature, by the bins a drift result
    recorded (its ``edges`` for a numeric feature): the very labels its PSI was
    computed from."""
    import pandas as pd

    columns = {}
    for found in features:
        values = frame[found["feature"]].to_numpy()
        columns[found["feature"]] = (
            categorical_labels(values)
            if found["kind"] == "categorical"
            else numeric_labels(values, found["edges"] or [])
        )
    return pd.DataFrame(columns)


def evidently_snapshot(
    reference: Any, current: Any, features: Sequence[Mapping[str, Any]], threshold: float
) -> Any:
    """Evidently's data drift preset over fraudctl's binned values: per feature
    Evidently's PSI on the same bins (so the same number), drifted at ``threshold``, and
    the dataset drifted when one feature is (``drift_share`` 1/n: fraudctl's verdict,
    the largest PSI at or over the threshold)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = [f["feature"] for f in features]
    definition = DataDefinition(categorical_columns=names)
    preset = DataDriftPreset(method="psi", threshold=threshold, drift_share=1 / len(names))
    # With its tests: they state each feature's threshold and the verdict in words.
    return Report([preset], include_tests=True).run(
        Dataset.from_pandas(binned(current, features), data_definition=definition),
        Dataset.from_pandas(binned(reference, features), data_definition=definition),
    )


def write_report(
    reference: Any,
    current: Any,
    path: Path,
    features: Sequence[Mapping[str, Any]],
    threshold: float,
) -> None:
    """The Evidently snapshot of a drift result as one HTML file."""
    snapshot = evidently_snapshot(reference, current, features, threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))


class EvidentlyReporter:
    """:class:`fraudctl.ports.DriftReporter`: Evidently's data-drift report as HTML, of
    the drift result's own bins and threshold."""

    def write_report(
        self,
        reference: Any,
        current: Any,
        path: Path,
        features: Sequence[Mapping[str, Any]],
        threshold: float,
    ) -> None:
        write_report(reference, current, path, features, threshold)
