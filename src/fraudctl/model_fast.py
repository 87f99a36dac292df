"""A compiled single-row evaluator for fraudctl's default model (a sigmoid-calibrated
``HistGradientBoostingClassifier`` pipeline).

scikit-learn's ``predict_proba`` costs ~10 ms for one row here: a data frame through the
column transformer, then one Cython call per tree.  Online scoring is one row at a time,
so at load the fitted trees are flattened into NumPy arrays and walked for all trees at
once, level by level (~0.8 ms a row).  The compiled form is used only when it reproduces
``predict_proba`` on a probe set covering every category, missing values and extremes
(to 1e-9); otherwise — another model kind, another scikit-learn layout — scoring stays on
scikit-learn.  Batches always go through scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from fraudctl.contract import COUNTRIES, DEVICES

TOLERANCE = 1e-9
RowScorer = Callable[[Mapping[str, Any]], float]


class _Compiled:
    def __init__(self, calibrated: Any, inputs: tuple[str, ...], categories: dict[str, Any]):
        import numpy as np

        np_ = np
        self._np = np_
        calibrations = calibrated.calibrated_classifiers_
        estimator = calibrations[0].estimator
        pipeline = getattr(estimator, "estimator", estimator)  # FrozenEstimator → pipeline
        classifier = pipeline.named_steps["classify"]
        self.categorical = [c for c in inputs if c in categories]
        self.numeric = [c for c in inputs if c not in categories]
        self.codes = [{v: float(i) for i, v in enumerate(categories[c])} for c in self.categorical]
        trees = [per_iteration[0] for per_iteration in classifier._predictors]
        sizes = [len(tree.nodes) for tree in trees]
        starts = np_.cumsum([0, *sizes[:-1]])
        nodes = np_.concatenate([tree.nodes for tree in trees])
        shift = np_.repeat(starts, sizes)
        self.value = nodes["value"].astype(np_.float64)
        self.feature = nodes["feature_idx"].astype(np_.int64)
        self.threshold = nodes["num_threshold"].astype(np_.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.left = nodes["left"].astype(np_.int64) + shift
        self.right = nodes["right"].astype(np_.int64) + shift
        self.is_leaf = nodes["is_leaf"].astype(bool)
        self.is_categorical = nodes["is_categorical"].astype(bool)
        bitset_shift = np_.cumsum([0, *[len(t.raw_left_cat_bitsets) for t in trees[:-1]]])
        self.bitset = nodes["bitset_idx"].astype(np_.int64) + np_.repeat(bitset_shift, sizes)
        self.bits = np_.concatenate([tree.raw_left_cat_bitsets for tree in trees])
        self.roots = starts.astype(np_.int64)
        self.baseline = float(np_.ravel(classifier._baseline_prediction)[0])
        self.levels = int(nodes["depth"].max()) + 2
        self.sigmoids = [
            (float(c.calibrators[0].a_), float(c.calibrators[0].b_)) for c in calibrations
        ]

    def _raw(self, x: Any) -> float:
        np = self._np
        node = self.roots
        for _ in range(self.levels):
            leaf = self.is_leaf[node]
            if leaf.all():
                break
            value = x[self.feature[node]]
            missing = np.isnan(value)
            categorical = self.is_categorical[node]
            go_left = value <= self.threshold[node]
            if categorical.any():
                usable = categorical & ~missing & (value >= 0) & (value < 256)
                code = np.where(usable, value, 0).astype(np.int64)
                word = self.bits[self.bitset[node], code // 32]
                go_left = np.where(categorical, ((word >> (code % 32)) & 1).astype(bool), go_left)
                missing = missing | (categorical & (value < 0))
            go_left = np.where(missing, self.missing_left[node], go_left)
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        return float(self.value[node].sum()) + self.baseline

    def __call__(self, row: Mapping[str, Any]) -> float:
        values = [self.codes[i].get(row[c], math.nan) for i, c in enumerate(self.categorical)]
        values += [float(row[c]) for c in self.numeric]
        raw = self._raw(self._np.asarray(values, dtype=self._np.float64))
        total = sum(1.0 / (1.0 + math.exp(a * raw + b)) for a, b in self.sigmoids)
        return total / len(self.sigmoids)


def compile_row_scorer(
    model: Any, inputs: tuple[str, ...], categories: dict[str, Any]
) -> RowScorer | None:
    """The compiled scorer of ``model`` when it reproduces ``predict_proba``; else None."""
    try:
        compiled = _Compiled(model, inputs, categories)
        probe = _probe(inputs, categories)
        expected = model.predict_proba(probe)[:, 1]
        got = [compiled(row) for row in probe.to_dict("records")]
    except Exception:  # another layout: keep scikit-learn
        return None
    if max(abs(a - b) for a, b in zip(got, expected, strict=True)) > TOLERANCE:
        return None
    return compiled


def _probe(inputs: tuple[str, ...], categories: dict[str, Any]) -> Any:
    """Every category pair (and an unknown one) with ordinary, extreme and sentinel
    numbers."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    rows = []
    countries = [*COUNTRIES, "XX"]
    devices = [*DEVICES, "xx"]
    for country in countries:
        for device in devices:
            for scale in (0.0, 1.0, 10.0, 1000.0, 1e6):
                row: dict[str, Any] = {"country": country, "device": device}
                for name in inputs:
                    if name not in categories:
                        row[name] = float(rng.choice([-1.0, 0.0, 1.0, scale * rng.random()]))
                rows.append(row)
    return pd.DataFrame(rows, columns=list(inputs))
