"""The FastAPI app of `fraudctl serve`: the same routes under Ray Serve (the ingress
deployment builds its app in each replica) and in the plain single-process server.

:func:`create_app` makes an app around one :class:`~fraudctl.serving.scorer.Scorer` and
its :class:`~fraudctl.serving.tracing.Tracing`; the routes reach them through the app's
state, so there is no module-level app and no global.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from fraudctl.contract import ScoreRequest
from fraudctl.errors import BackendUnavailable
from fraudctl.serving.scorer import Draining

if TYPE_CHECKING:
    from fraudctl.serving.scorer import Scorer
    from fraudctl.serving.tracing import Tracing

MAX_BODY = 64 * 1024  # one transaction
MAX_BATCH_BODY = 1024 * 1024  # a batch of up to MAX_BATCH transactions
MAX_BATCH = 1000


def create_app(scorer: Scorer, tracing: Tracing) -> FastAPI:
    """The scoring app around ``scorer`` (one per process: a replica, or uvicorn's)."""
    app = FastAPI(
        title="fraudctl scoring",
        version="1",
        description="Real-time fraud scores from the registered models and online features.",
        max_body_size=MAX_BODY,  # 413 before parsing; the batch route allows more
    )
    app.state.scorer, app.state.tracing = scorer, tracing
    app.add_middleware(CountResponses, metrics=scorer.metrics)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(routes)
    return app


def _scorer(request: Request) -> Scorer:
    scorer: Scorer = request.app.state.scorer
    return scorer


class Problem(BaseModel):
    detail: str


class ScoreResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    event_id: str
    score: float = Field(ge=0, le=1)
    decision: Literal["allow", "block"]
    threshold: float
    model_name: str
    model_version: str
    variant: Literal["baseline", "canary"]
    trace_id: str
    features: dict[str, float]
    features_age_seconds: float | None
    fallback: bool = Field(description="A failing canary's request served by the baseline.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transactions: list[ScoreRequest] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResponse(BaseModel):
    results: list[ScoreResponse]
    trace_id: str


class CanaryChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(
        strict=True,
        ge=0,
        le=100,
        allow_inf_nan=False,
        description="Percent of users sent to the canary.",
    )
    reason: str = Field(default="set by operator", max_length=500)


class Invalid(BaseModel):
    detail: list[dict[str, Any]]


# Every status a route can answer besides 200: the OpenAPI document lists each one.
INVALID: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "Body too large."},
    422: {"model": Invalid, "description": "The body is not JSON or breaks the contract."},
}
ERRORS: dict[int | str, dict[str, Any]] = INVALID | {
    503: {"model": Problem, "description": "Online store unavailable, or shutting down; retry."},
}

routes = APIRouter()

SCORING_ROUTES = ("/v1/score", "/v1/score/batch")


class CountResponses:
    """Every response of a scoring route by status code: the SLO's error rate. A pure ASGI
    middleware (Starlette's ``@app.middleware("http")`` wraps each request in extra tasks
    and streams; this only watches the response's start message)."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in SCORING_ROUTES:
            await self.app(scope, receive, send)
            return
        status = {"code": "500"}  # unless a response starts

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.responses.labels(handler=path, code=status["code"]).inc()


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot carry spelled out: non-finite numbers as
    their names, strings that are not valid Unicode (lone surrogates) with escapes."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI answers 400 to a body it cannot decode (not UTF-8): for a client that is
    the same mistake as a body that is not JSON, so it gets the same documented 422."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        reason = {"type": "json_invalid", "loc": ["body"], "msg": f"{exc.detail} (not UTF-8 JSON)"}
        return JSONResponse({"detail": [reason]}, status_code=422)
    return await http_exception_handler(request, exc)


async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 with the reasons, for any input: the echoed input may hold NaN or lone
    surrogates, which FastAPI's own handler cannot encode (it answered 500)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


def _score(transactions: list[ScoreRequest], request: Request, response: Response) -> Any:
    tracing: Tracing = request.app.state.tracing
    with tracing.request("score", request.headers.get("traceparent")) as trace:
        trace.set("fraudctl.batch_size", len(transactions))
        try:
            results = _scorer(request).score(transactions, trace)
        except BackendUnavailable as exc:
            stopping = isinstance(exc, Draining)
            return JSONResponse(
                {"detail": exc.message if stopping else f"online store unavailable: {exc.message}"},
                status_code=503,
                headers={"Retry-After": "1", "traceparent": trace.traceparent},
            )
        response.headers["traceparent"] = trace.traceparent
        return results, trace.trace_id


@routes.post(
    "/v1/score",
    response_model=ScoreResponse,
    responses=ERRORS,
    summary="Score one transaction",
)
def score(
    transaction: Annotated[ScoreRequest, Body()], request: Request, response: Response
) -> Any:
    outcome = _score([transaction], request, response)
    if isinstance(outcome, JSONResponse):
        return outcome
    return outcome[0][0]


@routes.post(
    "/v1/score/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    summary=f"Score up to {MAX_BATCH} transactions",
    max_body_size=MAX_BATCH_BODY,
)
def score_batch(batch: BatchRequest, request: Request, response: Response) -> Any:
    outcome = _score(batch.transactions, request, response)
    if isinstance(outcome, JSONResponse):
        return outcome
    results, trace_id = outcome
    return {"results": results, "trace_id": trace_id}


@routes.get("/health", summary="Liveness")
def health() -> dict[str, str]:
    return {"status": "ok"}


@routes.get("/ready", summary="Readiness", responses={503: {"model": Problem}})
def ready(request: Request) -> Any:
    ok, detail = _scorer(request).ready()
    if not ok:
        return JSONResponse({"detail": detail}, status_code=503)
    return {"status": "ready", "detail": detail}


@routes.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    scorer = _scorer(request)
    scorer.metrics.ready.set(1 if scorer.ready()[0] else 0)
    body, content_type = scorer.metrics.render()
    return Response(body, media_type=content_type)


@routes.get("/v1/models", summary="What serves each variant, and the split")
def models(request: Request) -> dict[str, Any]:
    scorer = _scorer(request)
    return scorer.variants.describe(scorer.weight, scorer.shadow_on)


@routes.get("/v1/canary", summary="Live per-variant statistics over a trailing window")
def canary_status(
    request: Request,
    window: Annotated[float, Query(gt=0, le=3600, description="Seconds.")] = 300.0,
) -> dict[str, Any]:
    scorer = _scorer(request)
    status = scorer.control.status(window)
    status["models"] = scorer.variants.describe(scorer.weight, scorer.shadow_on)
    return status


@routes.post("/v1/canary", summary="Set the canary weight (percent of users)", responses=INVALID)
def canary_set(change: CanaryChange, request: Request) -> dict[str, Any]:
    scorer = _scorer(request)
    result = scorer.control.set_weight(change.weight, change.reason)
    scorer.weight = change.weight  # this replica at once; the others within a second
    return result
