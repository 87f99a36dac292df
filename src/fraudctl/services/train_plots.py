"""The figures every training run logs: ROC and precision-recall curves with the chosen
threshold marked, the confusion matrix at that threshold, and feature importances."""

from __future__ import annotations

from typing import Any

from fraudctl.model import ALERT_FPR


def figures(
    labels: Any, scores: Any, threshold: float, importances: dict[str, float]
) -> dict[str, Any]:
    """Artifact path → matplotlib figure (drawn off-screen)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import (
        ConfusionMatrixDisplay,
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    out: dict[str, Any] = {}
    flagged = scores >= threshold

    figure, axes = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(labels, scores)
    axes.plot(fpr, tpr, label=f"ROC AUC {roc_auc_score(labels, scores):.3f}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    negatives = max(int((labels == 0).sum()), 1)
    positives = max(int((labels == 1).sum()), 1)
    point = (
        float((flagged & (labels == 0)).sum()) / negatives,
        float((flagged & (labels == 1)).sum()) / positives,
    )
    axes.scatter([point[0]], [point[1]], color="red", zorder=3, label=f"threshold {threshold:.3f}")
    axes.axvline(ALERT_FPR, linestyle="--", color="orange", label=f"FPR {ALERT_FPR:.0%}")
    axes.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (holdout)")
    axes.legend(loc="lower right")
    out["plots/roc_curve.png"] = figure

    figure, axes = plt.subplots(figsize=(5, 5))
    precision, recall, _ = precision_recall_curve(labels, scores)
    axes.plot(recall, precision, label=f"PR AUC {average_precision_score(labels, scores):.3f}")
    axes.axhline(float(np.mean(labels)), linestyle=":", color="grey", label="fraud share")
    tp = float((flagged & (labels == 1)).sum())
    axes.scatter(
        [tp / positives],
        [tp / max(int(flagged.sum()), 1)],
        color="red",
        zorder=3,
        label=f"threshold {threshold:.3f}",
    )
    axes.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)")
    axes.legend(loc="lower left")
    out["plots/pr_curve.png"] = figure

    figure, axes = plt.subplots(figsize=(4.5, 4))
    ConfusionMatrixDisplay.from_predictions(
        labels, flagged.astype(int), display_labels=["legit", "fraud"], ax=axes, colorbar=False
    )
    axes.set_title(f"Confusion matrix at {threshold:.3f} (holdout)")
    out["plots/confusion_matrix.png"] = figure

    names = list(importances)[::-1]
    figure, axes = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    axes.barh(names, [importances[name] for name in names])
    axes.set(xlabel="drop in ROC AUC when shuffled", title="Permutation importance (holdout)")
    figure.tight_layout()
    out["plots/feature_importance.png"] = figure
    return out


def close(figure: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
