"""The fraud model: its inputs, the scikit-learn pipelines, the decision-threshold rule
and the metrics — one definition shared by training, serving and promotion.

Inputs are the event's own fields (what a scoring request carries) plus the features of
:mod:`fraudctl.features` (what the feature store holds for it), in :data:`MODEL_INPUTS`
order.  A pipeline takes a data frame with those columns and nothing else: categories
are encoded inside it, so a registered model scores raw requests.

Models (``--model``):

- ``hgb`` (default): ``HistGradientBoostingClassifier`` with native categorical splits,
  ``class_weight="balanced"``, early stopping on an internal 10 % of the fit rows.
- ``logreg``: one-hot categories, cubic splines on quantile knots for every number
  (amounts and counts are far from linear in the log-odds), then a
  ``class_weight="balanced"`` logistic regression.

Class imbalance (about 2 % fraud) is handled twice: balanced class weights in the fit,
and a decision threshold chosen on held-back data instead of 0.5 (:func:`choose_threshold`).
The registered model is the fitted pipeline wrapped in a sigmoid calibration fitted on
that held-back data (:func:`calibrate`), so its scores are probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fraudctl.contract import COUNTRIES, DEVICES
from fraudctl.features import FEATURE_NAMES

RAW_FIELDS: tuple[str, ...] = ("transaction_amount", "country", "device")
MODEL_INPUTS: tuple[str, ...] = RAW_FIELDS + FEATURE_NAMES
CATEGORIES: dict[str, tuple[str, ...]] = {"country": COUNTRIES, "device": DEVICES}
MODEL_KINDS = ("hgb", "logreg")
ALERT_FPR = 0.01  # the false-positive budget of "recall at 1 % FPR"
THRESHOLD_RULE = "max-f1-on-validation"
FAST_ROWS = 16  # up to this many rows are scored by the compiled form when there is one
# What skops must be told to trust beyond its defaults to load each kind (reviewed: the
# tree predictors and splines scikit-learn fits, and the input check HGB keeps).
TRUSTED_TYPES: dict[str, list[str]] = {
    "hgb": [
        "functools.partial",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils.validation.check_array",
    ],
    "logreg": [
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
        "scipy.interpolate._bsplines.BSpline",
    ],
}
CALIBRATION_TYPES = [
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]


def make_pipeline(kind: str, seed: int = 0, inputs: Sequence[str] = MODEL_INPUTS) -> Any:
    """An unfitted pipeline of ``kind`` over the columns ``inputs`` (the raw-fields
    baseline passes :data:`RAW_FIELDS`)."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, SplineTransformer

    categorical = [c for c in inputs if c in CATEGORIES]
    numeric = [c for c in inputs if c not in CATEGORIES]
    known = [list(CATEGORIES[c]) for c in categorical]
    if kind == "hgb":
        encode = ColumnTransformer(
            [
                (
                    "categories",
                    OrdinalEncoder(
                        categories=known,
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                    ),
                    categorical,
                ),
                ("numbers", "passthrough", numeric),
            ],
            verbose_feature_names_out=False,
        )
        classifier: Any = HistGradientBoostingClassifier(
            categorical_features=list(range(len(categorical))),
            class_weight="balanced",
            max_iter=300,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=seed,
        )
    elif kind == "logreg":
        encode = ColumnTransformer(
            [
                (
                    "categories",
                    OneHotEncoder(categories=known, handle_unknown="ignore"),
                    categorical,
                ),
                ("numbers", SplineTransformer(n_knots=6, knots="quantile"), numeric),
            ],
            verbose_feature_names_out=False,
        )
        classifier = LogisticRegression(class_weight="balanced", max_iter=3000, random_state=seed)
    else:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_KINDS)}")
    return Pipeline([("encode", encode), ("classify", classifier)])


def all_trusted_types() -> list[str]:
    """Every type fraudctl's own models need trusted: what serving loads with (never the
    list a model file carries about itself)."""
    return sorted({t for kind in MODEL_KINDS for t in trusted_types(kind)})


@dataclass(frozen=True)
class LoadedModel:
    """A registered model ready to score: where it came from and its stored threshold."""

    name: str
    version: str
    alias: str
    model: Any
    threshold: float
    row_scorer: Any = None  # fraudctl.model_fast's compiled form, when it is exact

    def scores(self, frame: Any) -> Any:
        return self.model.predict_proba(frame[list(MODEL_INPUTS)])[:, 1]

    def score_rows(self, rows: Sequence[dict[str, Any]]) -> list[float]:
        """Scores of rows of model inputs: compiled one by one for a few rows, through
        scikit-learn for more (where its per-call overhead is amortised)."""
        if self.row_scorer is not None and len(rows) <= FAST_ROWS:
            return [self.row_scorer(row) for row in rows]
        import pandas as pd

        return [float(s) for s in self.scores(pd.DataFrame(rows, columns=list(MODEL_INPUTS)))]


def calibrate(pipeline: Any, frame: Any, labels: Any) -> Any:
    """The fitted ``pipeline`` with its scores mapped to probabilities (Platt scaling
    fitted on ``frame``, data the pipeline was not fitted on).  Balanced class weights
    inflate raw scores about fifty-fold at a 2 % fraud share; the sigmoid is monotonic,
    so rankings (ROC and PR AUC) do not change, only the Brier score and the meaning of
    a threshold do."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    calibrated = CalibratedClassifierCV(FrozenEstimator(pipeline), method="sigmoid")
    return calibrated.fit(frame, labels)


def trusted_types(kind: str) -> list[str]:
    return TRUSTED_TYPES[kind] + CALIBRATION_TYPES


def choose_threshold(labels: Any, scores: Any) -> float:
    """The rule: the score threshold that maximizes F1 on the validation slice (data the
    model was not fitted on), flagging ``score >= threshold``.  Ties go to the higher
    threshold (fewer alerts)."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(thresholds[best])


def recall_at_fpr(labels: Any, scores: Any, fpr_budget: float = ALERT_FPR) -> float:
    """The highest recall reachable while flagging at most ``fpr_budget`` of the
    legitimate events."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    within = tpr[fpr <= fpr_budget]
    return float(within.max()) if within.size else 0.0


def evaluate(labels: Any, scores: Any, threshold: float) -> dict[str, float]:
    """The holdout metrics every training run reports."""
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    flagged = scores >= threshold
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "recall_at_1pct_fpr": recall_at_fpr(labels, scores),
        "precision_at_threshold": float(precision_score(labels, flagged, zero_division=0)),
        "recall_at_threshold": float(recall_score(labels, flagged, zero_division=0)),
        "brier": float(brier_score_loss(labels, scores)),
        "flagged_share": float(flagged.mean()),
    }
