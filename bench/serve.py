"""Benchmark: `fraudctl serve` under an open-loop load, Ray Serve against one plain
uvicorn process serving the same app, model and online features.

Starts a private native stack (broker, S3, Redis, MLflow) on free ports, produces and
materializes 20,000 events, trains the default model (the baseline variant serves it as
`candidate`), then for each engine — `fraudctl serve` (Ray Serve, one replica, direct
ingress), `fraudctl serve --ingress proxy` (through Serve's proxy actor) and
`fraudctl serve --engine uvicorn` — sends POST /v1/score at a fixed arrival rate (open
loop: request i is due at start + i/rate whatever happened before; its latency is
measured from when it was due, so a stall shows up in every request it delays). Each rate
runs --seconds seconds after a warm-up.

Target (issue 6): Ray Serve p95 ≤ 10 ms at 100 requests/s with 0 errors. Then Ray with
`--shadow` at the first rate: what shadow scoring adds to p95 (target ≤ 1 ms).

    .venv/bin/python bench/serve.py [--rates 100 200] [--seconds 30]
        [--out bench/results/serve.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import emit, trained_stack

TARGET_P95_MS = 10.0
DRAIN_S = 30.0  # after the last request is sent, how long the rest may take


def bodies(n: int) -> list[bytes]:
    from fraudctl.generator import ulid_from

    out = []
    for _ in range(n):
        now = datetime.now(UTC)
        out.append(
            json.dumps(
                {
                    "event_id": ulid_from(int(now.timestamp() * 1000), random.getrandbits(80)),
                    "user_id": f"user-{random.randrange(10_000)}",
                    "transaction_amount": round(random.uniform(1, 400), 2),
                    "country": random.choice(["US", "CA", "GB", "DE", "FR", "IN", "BR"]),
                    "device": random.choice(["ios", "android", "web"]),
                    "event_ts": now.isoformat().replace("+00:00", "Z"),
                }
            ).encode()
        )
    return out


async def open_loop(
    url: str, rate: float, seconds: float, path: str = "/v1/score", make: Any = None
) -> dict[str, Any]:
    """POST ``make(n)``'s bodies (default: scoring requests) to ``url + path`` at ``rate``."""
    import httpx
    import numpy as np

    total = int(rate * seconds)
    payloads = (make or bodies)(total)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(payload: bytes, due: float) -> None:
            nonlocal errors
            try:
                response = await client.post(
                    f"{url}{path}", content=payload, headers={"content-type": "application/json"}
                )
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - due) * 1000)

        tasks = []
        start = time.perf_counter() + 0.1
        for i, payload in enumerate(payloads):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(payload, due)))
        # An open loop above capacity queues without end: the run has its own bound, and
        # what has not finished by then counts as unfinished (and as errors).
        _done, pending = await asyncio.wait(tasks, timeout=DRAIN_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        errors += len(pending)
        elapsed = time.perf_counter() - start
    values = np.asarray(latencies or [float("nan")])
    return {
        "rate": rate,
        "requests": total,
        "achieved_rate": round(total / elapsed, 1),
        "errors": errors,
        "unfinished": len(pending),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p95_ms": round(float(np.percentile(values, 95)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


ENGINES = {  # name → `fraudctl serve` options
    "ray": [],  # Ray Serve, direct ingress (the default for one replica)
    "ray-proxy": ["--ingress", "proxy"],  # Ray Serve through its proxy actor
    "uvicorn": ["--engine", "uvicorn"],  # the baseline: one process, no Ray
    "ray-shadow": ["--shadow"],
}


def measure(
    engine: str, env: dict[str, str], port: int, rates: list[float], seconds: float
) -> list[dict[str, Any]]:
    args = [sys.executable, "-m", "fraudctl", "serve", "--port", str(port), "--json"]
    args += ENGINES[engine]
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        if not process.stdout.readline():
            raise RuntimeError(f"serve --engine {engine} did not start")
        url = f"http://127.0.0.1:{port}"
        asyncio.run(open_loop(url, 50, 4))  # warm-up
        runs = []
        for rate in rates:
            print(f"[{engine}] {rate:g} requests/s for {seconds:g} s…", file=sys.stderr)
            runs.append(asyncio.run(open_loop(url, rate, seconds)))
        return runs
    finally:
        process.send_signal(2)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    from fraudctl.stack.native import free_ports

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 200.0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with trained_stack("fraudctl-bench-serve-") as (env, _home):
        ports = list(free_ports(("kafka", "redis", "s3", "mlflow")).values())
        results = {
            name: measure(
                name, env, port, args.rates[:1] if name == "ray-shadow" else args.rates,
                args.seconds,
            )
            for name, port in zip(ENGINES, ports, strict=True)
        }  # fmt: skip
    by_rate = []
    for ray_run, proxy_run, plain_run in zip(
        results["ray"], results["ray-proxy"], results["uvicorn"], strict=True
    ):
        by_rate.append(
            {
                "rate": ray_run["rate"],
                "ray": ray_run,
                "ray_proxy": proxy_run,
                "uvicorn": plain_run,
                "ratio_p95_ray_over_uvicorn": round(ray_run["p95_ms"] / plain_run["p95_ms"], 2),
                "ratio_p95_ray_proxy_over_uvicorn": round(
                    proxy_run["p95_ms"] / plain_run["p95_ms"], 2
                ),
            }
        )
    first = results["ray"][0]
    shadow = results["ray-shadow"][0]
    emit(
        {
            "benchmark": "serve",
            "machine": {"cores": os.cpu_count()},
            "target": {"rate": args.rates[0], "p95_ms": TARGET_P95_MS, "errors": 0},
            "seconds_per_rate": args.seconds,
            "runs": by_rate,
            "shadow": {
                "rate": shadow["rate"],
                "ray_with_shadow": shadow,
                "p95_added_ms": round(shadow["p95_ms"] - first["p95_ms"], 2),
            },
            "meets_target": first["p95_ms"] <= TARGET_P95_MS and first["errors"] == 0,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
