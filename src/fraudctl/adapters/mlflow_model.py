"""The fraud model as an MLflow Python model ("models from code"): MLflow saves this file
with every registered version and runs it to load the model, so `mlflow.pyfunc.load_model`
and `mlflow models serve -m models:/NAME@production` score on their own.

- Input: a frame with the model's inputs by name (the transaction's ``transaction_amount``,
  ``country``, ``device`` and the nine features; the signature lists them).
- Output: ``fraud_probability`` (the calibrated score ``/v1/score`` returns) and
  ``is_fraud`` (``fraud_probability >= threshold``, the stored decision threshold: what
  ``/v1/score`` answers ``block``).
- The fitted pipeline is the artifact ``model`` (skops; never pickle), loaded with the
  trusted types stored in the model's config; this file imports MLflow, skops and pandas
  only, so loading the model needs no fraudctl.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel

OUTPUT_SCORE = "fraud_probability"
OUTPUT_DECISION = "is_fraud"


class FraudModel(PythonModel):
    def load_context(self, context: Any) -> None:
        import skops.io

        config = context.model_config
        self.inputs = list(config["inputs"])
        self.threshold = float(config["threshold"])
        self.model = skops.io.load(context.artifacts["model"], trusted=config["trusted_types"])

    # A data frame in and out: MLflow reads these hints (the signature is the logged one).
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return outputs(self.model.predict_proba(model_input[self.inputs])[:, 1], self.threshold)


def outputs(scores: Any, threshold: float) -> pd.DataFrame:
    """The model's answer for ``scores``: what ``predict`` returns and the signature says."""
    return pd.DataFrame({OUTPUT_SCORE: scores, OUTPUT_DECISION: scores >= threshold})


mlflow.models.set_model(FraudModel())
