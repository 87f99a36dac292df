"""Serving's pieces without services: canary assignment, the control plane's statistics,
the watch rule, and the compiled model's exactness."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from fraudctl.contract import COUNTRIES, DEVICES
from fraudctl.model import CATEGORIES, MODEL_INPUTS, calibrate, make_pipeline
from fraudctl.model_fast import compile_row_scorer
from fraudctl.serving.control import Control, LiveStats
from fraudctl.serving.variants import assign_variant, bucket_of
from tests.fakes import InMemoryRegistry


def test_assignment_is_sticky_and_matches_the_weight_over_many_users() -> None:
    users = [f"user-{i}" for i in range(20_000)]
    assert [bucket_of(u) for u in users[:100]] == [bucket_of(u) for u in users[:100]]
    for weight in (0, 5, 20, 50, 100):
        share = sum(assign_variant(u, weight, True) == "canary" for u in users) / len(users)
        assert abs(share - weight / 100) <= 0.015, (weight, share)
    assert {assign_variant(u, 100, False) for u in users[:100]} == {"baseline"}
    # Raising the weight only moves users from baseline to canary, never back.
    at_10 = {u for u in users if assign_variant(u, 10, True) == "canary"}
    at_30 = {u for u in users if assign_variant(u, 30, True) == "canary"}
    assert at_10 <= at_30


def test_control_keeps_history_and_aggregates_a_window() -> None:
    control = Control(20)
    control.set_weight(0, "rollback: test")
    assert control.get_weight() == 0
    assert control.state() == (0, False)
    control.stop()
    assert control.state() == (0, True)
    assert [c["reason"] for c in control.history()] == ["serve started", "rollback: test"]
    now = time.time()
    stats = {
        "requests": 100,
        "errors": 5,
        "score_sum": 10.0,
        "shadow_total": 100,
        "shadow_agree": 97,
        "latencies_ms": list(np.linspace(1, 100, 100)),
    }
    control.record(now, "canary", LiveStats(**stats))
    control.record(now - 1000, "canary", LiveStats(**stats))  # outside a 60 s window
    status = control.status(60)
    canary = status["variants"]["canary"]
    assert canary["requests"] == 100 and canary["error_rate"] == pytest.approx(0.05)
    assert canary["p95_ms"] == pytest.approx(np.percentile(np.linspace(1, 100, 100), 95))
    assert canary["shadow_agreement"] == pytest.approx(0.97)
    assert canary["mean_score"] == pytest.approx(0.1)


def _training_frame(rows: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({name: rng.exponential(10, rows) for name in MODEL_INPUTS})
    frame["country"] = rng.choice(list(COUNTRIES), rows)
    frame["device"] = rng.choice(list(DEVICES), rows)
    frame["seconds_since_last_txn"] = np.where(rng.random(rows) < 0.2, -1.0, frame["txn_count_1h"])
    logit = 0.3 * frame["transaction_amount"] - 4 + (frame["device"] == "web") * 2
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, labels


def test_the_compiled_model_reproduces_scikit_learn() -> None:
    frame, labels = _training_frame()
    pipeline = make_pipeline("hgb", 0).fit(frame[:2000], labels[:2000])
    model = calibrate(pipeline, frame[2000:2500], labels[2000:2500])
    fast = compile_row_scorer(model, MODEL_INPUTS, CATEGORIES)
    assert fast is not None
    test = frame[2500:].copy()
    test.loc[test.index[:5], "country"] = "XX"  # unknown → missing, as scikit-learn does
    expected = model.predict_proba(test)[:, 1]
    got = [fast(row) for row in test.to_dict("records")]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_other_model_layouts_stay_on_scikit_learn() -> None:
    frame, labels = _training_frame(1500)
    logreg = make_pipeline("logreg", 0).fit(frame[:1000], labels[:1000])
    model = calibrate(logreg, frame[1000:], labels[1000:])
    assert compile_row_scorer(model, MODEL_INPUTS, CATEGORIES) is None
    uncalibrated = make_pipeline("hgb", 0).fit(frame, labels)
    assert compile_row_scorer(uncalibrated, MODEL_INPUTS, CATEGORIES) is None


def test_a_request_span_has_children_and_continues_the_callers_trace() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fraudctl.serving.tracing import Tracing

    tracing = Tracing(None)
    spans = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(spans))
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracing.request("score", caller) as trace:
        with trace.span("feature_fetch"):
            pass
        with trace.span("model"):
            pass
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert trace.traceparent.startswith(f"00-{trace.trace_id}-")
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert set(finished) == {"score", "feature_fetch", "model"}
    root = finished["score"]
    assert finished["model"].parent is not None
    assert finished["model"].parent.span_id == root.context.span_id
    with tracing.request("score", None) as fresh:
        pass
    assert fresh.trace_id != trace.trace_id and len(fresh.trace_id) == 32
    tracing.shutdown()
    assert Tracing("console").provider is not None
    assert Tracing("http://127.0.0.1:4318").provider is not None  # exporter built, lazily used


def test_nothing_to_serve_is_one_refusal_wherever_it_is_found() -> None:
    from fraudctl.errors import ExitCode, Refused
    from fraudctl.serving.variants import ModelSource

    source = ModelSource(InMemoryRegistry(), shadow=False)
    with pytest.raises(Refused, match="nothing to serve") as refused:
        source.load(source.versions())
    assert refused.value.exit_code == ExitCode.REFUSED
    assert source.baseline_alias({"production": None, "staging": "3", "candidate": "4"}) == (
        "staging"
    )


@pytest.mark.parametrize("shadow", [False, True])
def test_the_variants_follow_the_aliases_and_each_version_loads_once(shadow: bool) -> None:
    from fraudctl.serving.variants import ModelSource

    registry = InMemoryRegistry()
    one, two, three = (registry.add_version(object(), 0.5) for _ in range(3))
    source = ModelSource(registry, shadow=shadow)
    registry.set_alias("candidate", one)
    variants = source.load(source.versions())
    assert (variants.baseline.version, variants.baseline_alias) == (one, "candidate")
    assert variants.canary is None  # no production: nothing to be a canary beside
    assert (variants.shadow is not None) == shadow  # the candidate shadows itself
    registry.set_alias("staging", one)
    registry.set_alias("production", two)
    registry.set_alias("candidate", three)
    variants = source.load(source.versions())
    assert variants.baseline.version == two and variants.canary is not None
    assert variants.canary.version == one and variants.canary.alias == "staging"
    assert (variants.shadow.version if variants.shadow else None) == (three if shadow else None)
    loads = registry.loads
    source.load(source.versions())
    assert registry.loads == loads  # cached: a reload with the same aliases loads nothing
