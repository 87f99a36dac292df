"""schemathesis over every operation of an OpenAPI schema, with every check, positive
and negative cases: the one fuzzing loop of the in-process and the real-server tests."""

from __future__ import annotations

from collections import Counter
from typing import Any


def clock_dependent_refusal(response: Any) -> bool:
    """A 422 whose every reason is an event time more than a minute in the future: the
    one rule of the contract that depends on the clock, so no JSON Schema can state it
    and schemathesis's positive-data check would count it as a schema-valid refusal."""
    if response.status_code != 422:
        return False
    detail = response.json()["detail"]
    return all(e["loc"][-1] == "event_ts" and "in the future" in e["msg"] for e in detail)


def fuzz_every_operation(
    schema: Any, max_examples: int, base_url: str | None = None
) -> tuple[Counter[str], list[str]]:
    """Cases run per "METHOD /path mode", and every failure found (all are collected,
    so one run names every kind)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import CHECKS
    from schemathesis.core.failures import FailureGroup

    checks = CHECKS.get_all()
    calls: Counter[str] = Counter()
    failures: list[str] = []
    call_options = {} if base_url is None else {"base_url": base_url}

    def fuzz(operation: Any, mode: GenerationMode) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @settings(
            max_examples=max_examples, deadline=None, phases=[Phase.generate],
            suppress_health_check=list(HealthCheck), database=None,
        )  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            calls[f"{label} {mode.value}"] += 1
            response = case.call(**call_options)
            if clock_dependent_refusal(response):
                return
            try:
                case.validate_response(response, checks=checks)
            except (Exception, FailureGroup) as exc:
                failures.append(f"{label} [{mode.value}]: {exc}"[:600])

        try:
            run()
        except Unsatisfiable:  # a negative run of a route with no input to break
            assert mode == GenerationMode.NEGATIVE and not operation.body

    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(result.ok(), mode)
    return calls, failures
