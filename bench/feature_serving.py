"""Benchmark: the same request-time features served by Feast's own feature server
(`feast serve` on the repository `fraudctl features repo` writes) and by fraudctl's
scoring path (`fraudctl serve`: the same features, then the model), at the same open-loop
rates, p50/p95/p99 side by side.

Starts a private native stack (broker, S3, Redis, MLflow) on free ports, produces and
materializes 20,000 events, trains the default model, writes the Feast repository, then
for each server sends one request per transaction at a fixed arrival rate (open loop,
latency from when a request was due: `bench/serve.py`'s generator):

- `feast serve` (one worker), `POST /get-online-features` with the `fraud_scoring`
  feature service and one entity row (user + the request's fields): features only;
- `fraudctl serve --engine uvicorn` (one process), `POST /v1/score`: features + score;
- `fraudctl serve` (Ray Serve, one replica, direct ingress), `POST /v1/score`.

The ratio is fraudctl's p95 over Feast's at each rate (below 1: fraudctl's whole scoring
path answers faster than Feast's server returns the features alone).

    .venv/bin/python bench/feature_serving.py [--rates 25 50 100] [--seconds 15]
        [--out bench/results/feature_serving.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import emit, fraudctl, trained_stack
from serve import open_loop

FEAST = str(Path(sys.executable).with_name("feast"))


def feast_bodies(n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        entities = {
            "user_id": [f"user-{random.randrange(10_000)}"],
            "transaction_amount": [round(random.uniform(1, 400), 2)],
            "country": [random.choice(["US", "CA", "GB", "DE", "FR", "IN", "BR"])],
            "device": [random.choice(["ios", "android", "web"])],
            "event_ts": [now],
        }
        out.append(json.dumps({"feature_service": "fraud_scoring", "entities": entities}).encode())
    return out


def started(
    command: list[str], env: dict[str, str], ready: str, log: Path
) -> subprocess.Popen[bytes]:
    import httpx

    with log.open("w") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=sink, start_new_session=True
        )
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"{command[:3]} did not get ready: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def measure(name: str, command: list[str], env: dict[str, str], port: int, path: str,
            make: Any, rates: list[float], seconds: float,
            workdir: Path) -> list[dict[str, Any]]:  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    ready = f"{url}/health" if name == "feast" else f"{url}/ready"
    process = started(command, env, ready, workdir / f"{name}.log")
    try:
        asyncio.run(open_loop(url, 20, 3, path, make))  # warm-up
        runs = []
        for rate in rates:
            print(f"[{name}] {rate:g} requests/s for {seconds:g} s…", file=sys.stderr)
            runs.append(asyncio.run(open_loop(url, rate, seconds, path, make)))
        return runs
    finally:
        stop(process)


def main() -> None:
    from fraudctl.stack.native import free_ports

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[25.0, 50.0, 100.0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with trained_stack("fraudctl-bench-features-") as (stack_env, workdir):
        # As in an activated virtualenv: `feast serve` starts its server by name.
        path = f"{Path(sys.executable).parent}{os.pathsep}{stack_env.get('PATH', '')}"
        env = stack_env | {"PATH": path}
        repo = workdir / "feature_repo"
        fraudctl("features", "repo", "--dir", str(repo), env=env)
        ports = list(free_ports(("kafka", "redis", "s3")).values())
        serve = [sys.executable, "-m", "fraudctl", "serve", "--json"]
        setups = {
            "feast": ([FEAST, "-c", str(repo), "serve", "--host", "127.0.0.1",
                       "-p", str(ports[0])], "/get-online-features", feast_bodies),
            "fraudctl_uvicorn": ([*serve, "--engine", "uvicorn", "--port", str(ports[1])],
                                 "/v1/score", None),
            "fraudctl_ray": ([*serve, "--port", str(ports[2])], "/v1/score", None),
        }  # fmt: skip
        results = {
            name: measure(name, command, env, port, endpoint, make, args.rates, args.seconds,
                          workdir)
            for (name, (command, endpoint, make)), port in zip(setups.items(), ports,
                                                                strict=True)
        }  # fmt: skip
    runs = []
    for feast_run, plain_run, ray_run in zip(
        results["feast"], results["fraudctl_uvicorn"], results["fraudctl_ray"], strict=True
    ):
        runs.append(
            {
                "rate": feast_run["rate"],
                "feast_serve": feast_run,
                "fraudctl_uvicorn": plain_run,
                "fraudctl_ray": ray_run,
                "ratio_p95_fraudctl_uvicorn_over_feast": round(
                    plain_run["p95_ms"] / feast_run["p95_ms"], 2
                ),
                "ratio_p95_fraudctl_ray_over_feast": round(
                    ray_run["p95_ms"] / feast_run["p95_ms"], 2
                ),
            }
        )
    emit(
        {
            "benchmark": "feature_serving",
            "machine": {"cores": os.cpu_count()},
            "seconds_per_rate": args.seconds,
            "feast_serve": "features only (fraud_scoring), 1 worker",
            "fraudctl": "features + model (/v1/score)",
            "runs": runs,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
