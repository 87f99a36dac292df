"""Where the scoring app runs: Ray Serve (the product: replicas, a shared control actor,
local Ray or ``FRAUDCTL_RAY_ADDRESS``) or one plain uvicorn process (``--engine uvicorn``:
no Ray, for development and as the benchmark's baseline)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fraudctl.config import Settings
from fraudctl.serving.control import Control
from fraudctl.serving.scorer import ControlLink, Scorer

CONTROL_ACTOR = "fraudctl-serve-control"
NAMESPACE = "fraudctl"
APP_NAME = "fraudctl"
_owned: dict[str, Any] = {}


def local_link(control: Control) -> ControlLink:
    return ControlLink(control.state, control.record, control.set_weight, control.status)


def ray_link(handle: Any) -> ControlLink:
    import ray

    def state() -> tuple[float, bool]:
        weight, stopping = ray.get(handle.state.remote(), timeout=5)
        return float(weight), bool(stopping)

    return ControlLink(
        state=state,
        record=handle.record.remote,
        set_weight=lambda weight, reason: ray.get(handle.set_weight.remote(weight, reason)),
        status=lambda window: ray.get(handle.status.remote(window), timeout=10),
    )


def host_scorer(settings: Settings, link: ControlLink, shadow: bool) -> tuple[Scorer, Any]:
    """This process's scorer, and the app around it (with its tracing)."""
    from fraudctl.bootstrap import wire
    from fraudctl.serving.app import create_app
    from fraudctl.serving.scorer import Scorer
    from fraudctl.serving.tracing import Tracing

    scorer = Scorer(wire(settings), link, shadow)
    return scorer, create_app(scorer, Tracing(settings.otlp_endpoint))


def run_uvicorn(
    settings: Settings,
    host: str,
    port: int,
    canary: float,
    shadow: bool,
    on_ready: Callable[[], None],
) -> None:
    """Build the scorer, then serve with uvicorn until interrupted; ``on_ready`` runs once
    the socket accepts connections.  On SIGINT/SIGTERM uvicorn stops accepting, lets the
    requests in flight finish, and returns; then the prediction log is flushed.  (uvicorn
    raises the signal again once it is done: the caller's handler must absorb it.)"""
    import uvicorn

    scorer, app = host_scorer(settings, local_link(Control(canary)), shadow)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:  # listening
                on_ready()

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    try:
        Server(config).run()
    finally:
        scorer.close()


INGRESS_MODES = ("direct", "proxy")


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def start_ray(
    settings: Settings,
    host: str,
    port: int,
    canary: float,
    shadow: bool,
    replicas: int,
    ingress: str = "proxy",
) -> None:
    """Start (or join) Ray, the control actor and the Serve application; returns once
    every replica is up.  ``ingress`` "direct": the one replica listens on ``port``
    itself (local Ray only); "proxy": Serve's proxy listens there and spreads requests
    over the replicas."""
    import os

    import ray
    from ray import serve

    # Ray lowers its workers' priority (nice 15) by default: on a small machine a busy
    # neighbour — a load generator, the feature pipeline — then starves the replicas and
    # throughput collapses (measured: 18 requests/s at an offered 100).  Serving is the
    # latency-critical work here; a user's own setting wins.
    os.environ.setdefault("RAY_worker_niceness", "0")
    proxy_port = port
    if ingress == "direct":
        # Ray Serve's direct ingress: the ingress replica runs the HTTP server itself on
        # --port, so a request skips the proxy actor and its extra hop (measured: p95
        # 25 ms → 7 ms at 100 requests/s on 2 cores, docs/serve.md).  The settings are
        # read when Ray's processes start, so they go into the environment they inherit.
        # Serve still starts its proxy; it gets a free loopback port of its own.
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(port)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(port + 1)
        # A stopping replica answers 503 for this long before it exits (Serve's default
        # 30 s is for a load balancer to deregister it; docs/serve.md#stopping).
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] = str(settings.serve_drain_s)
        proxy_port = _free_port(host)
    ray.init(
        # "local": always a fresh private instance, never a leftover one found on the machine
        address=settings.ray_address or "local",
        namespace=NAMESPACE,
        include_dashboard=False,
        configure_logging=True,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    if not settings.ray_address:
        # The Ray this driver started dies with it, even on kill -9 (serving/reaper.py).
        from fraudctl.serving import reaper

        _owned["reaper"] = reaper.start(os.getpid())
    control = _control_actor(canary)
    ray.get(control.set_weight.remote(canary, "serve started"))
    _owned["control"] = control  # the actor lives as long as the driver holds a handle
    serve.start(http_options={"host": host, "port": proxy_port})
    deployment = _deployment().options(num_replicas=replicas)
    serve.run(deployment.bind(settings, shadow), name=APP_NAME, route_prefix="/")


def app_builder(args: dict[str, str]) -> Any:
    """Ray Serve application builder for a cluster Ray runs itself (KubeRay's RayService
    in deploy/k8s): ``import_path: fraudctl.serving.hosts:app_builder`` with the args
    ``canary`` (percent, default 0) and ``shadow`` (true/false). Settings come from the
    pod's environment, as everywhere. The control actor is detached: the builder's task
    ends, the split must not."""
    from fraudctl.config import load_settings

    canary = float(args.get("canary", 0))
    if not 0 <= canary <= 100:
        raise ValueError(f"canary must be a percent in 0..100, got {canary}")
    shadow = str(args.get("shadow", "false")).strip().lower() in {"1", "true", "yes", "on"}
    _control_actor(canary, lifetime="detached")
    return _deployment().bind(load_settings().settings, shadow)


def _control_actor(canary: float, **options: Any) -> Any:
    """The one control actor (the split, its history) in fraudctl's namespace: made on
    first call, found on later ones."""
    import ray

    actor: Any = ray.remote(Control)
    return actor.options(
        name=CONTROL_ACTOR, namespace=NAMESPACE, num_cpus=0, get_if_exists=True, **options
    ).remote(canary)


def stop_ray() -> None:
    import ray
    from ray import serve

    try:
        # Replicas see the stop within a second (their statistics sync), flush their
        # prediction logs and answer 503 from then on; deleting the application then
        # waits for their graceful shutdown (``__del__`` flushes once more).
        control = _owned.get("control")
        if control is not None:
            with contextlib.suppress(Exception):  # the delete below must run regardless
                ray.get(control.stop.remote(), timeout=5)
        with contextlib.suppress(Exception):
            serve.delete(APP_NAME)
        serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        watcher = _owned.pop("reaper", None)
        _owned.clear()
        ray.shutdown()
        if watcher is not None:  # Ray stopped in order: nothing left for it to reap
            watcher.terminate()
            watcher.wait(timeout=10)


def _deployment() -> Any:
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
    @serve.ingress()  # the app is built in each replica, around its own scorer
    class ScoringReplica:
        def __init__(self, settings: Settings, shadow: bool) -> None:
            import ray

            handle = ray.get_actor(CONTROL_ACTOR, namespace=NAMESPACE)
            self.scorer, self._app = host_scorer(settings, ray_link(handle), shadow)

        def __serve_build_asgi_app__(self) -> Any:
            return self._app

        def __del__(self) -> None:
            # Serve calls this in a replica's graceful shutdown, after the requests in
            # flight finished: the prediction log's buffer reaches the offline store.
            scorer = getattr(self, "scorer", None)
            if scorer is not None:
                scorer.close()

    return ScoringReplica
