"""`fraudctl demo`: the whole loop, end to end, through the real commands.

Each step runs the fraudctl CLI itself in a child process with ``--json`` (exactly what a
user or a CI pipeline would type), its stderr kept in a log file per step. A step whose
exit code is not the expected one stops the demo, naming the step, its log and a fix.

Event time is laid out so one run shows every stage without waiting (``T`` = start):

- history: ``--count`` events over ``[T-52h, T-4h)``, labels 10 minutes after each event.
  The first 12 hours only warm up the 24-hour window features (no user has a history
  before them), so every model trains, and drift compares, from ``T-40h`` on;
- model A trained on ``[T-40h, T-16h)``, checked for drift against ``[T-16h, T-4h)``;
  model B on ``[T-40h, T-4h)``;
- the drifted stream: ``--drift amount=2.5`` over ``[T-4h, T-5min)`` at the history's
  density (``--count / 12`` events), new traffic (``--seed 2``) of the same users
  (``--population-seed 1``), so only the drifted distribution differs; model C is
  trained on everything and refused by the drift gate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudctl.errors import ExitCode, FraudctlError

HOUR = 3600.0
CANARY_PERCENT = 10.0
TRAFFIC_ROWS = 3000
DRIFT_SPEC = "amount=2.5"


class DemoStepFailed(FraudctlError):
    """A step of the demo ended with an unexpected exit code (carried over)."""

    def __init__(self, message: str, *, hint: str, exit_code: int) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = ExitCode(exit_code) if exit_code in set(ExitCode) else ExitCode.BUG


@dataclass
class StepRecord:
    name: str
    title: str
    command: str
    exit_code: int
    expected: list[int]
    seconds: float
    log: str
    result: Any = None
    ok: bool = True


@dataclass
class DemoReport:
    profile: str
    home: str
    run_id: str
    started_at: str
    steps: list[StepRecord] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    ok: bool = False
    failed_step: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DemoPlan:
    """What the demo runs, and the settings its child commands start with."""

    profile: str
    home: Path
    flags: dict[str, str] = field(default_factory=dict)  # the user's --set overrides
    env_file: Path | None = None
    toml_file: Path | None = None
    count: int = 20_000
    port: int = 0
    now: float = field(default_factory=lambda: float(int(time.time()) // 60 * 60))
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def logs(self) -> Path:
        return self.home / "demo-logs"

    def window(self, start_h: float, end_h: float) -> str:
        return f"{iso(self.now - start_h * HOUR)}/{iso(self.now - end_h * HOUR)}"

    def child_flags(self) -> dict[str, str]:
        """Settings of every child command: the run's home and, on the stack profile,
        the run's own topics, consumer group, bucket and model name."""
        # One partition unless the user chose: Feast's file offline store pays per
        # Parquet file (one per hour and partition), and the demo's volume needs one.
        flags = {"topic_partitions": "1"} | {
            k: v for k, v in self.flags.items() if k not in {"profile", "home"}
        }
        if self.profile == "stack":
            run = self.run_id
            flags |= {
                "topic_transactions": f"demo-{run}-transactions",
                "topic_labels": f"demo-{run}-labels",
                "topic_dlq": f"demo-{run}-dlq",
                "consumer_group": f"demo-{run}",
                "s3_bucket": f"demo-{run}",
                "model_name": f"fraud-demo-{run}",
            }
        return {"profile": self.profile, "home": str(self.home)} | flags

    def global_args(self) -> list[str]:
        from fraudctl.cli.common import global_args

        return global_args(self.child_flags(), self.env_file, self.toml_file)

    def settings(self) -> Any:
        from fraudctl.config import load_settings

        return load_settings(
            self.child_flags(), env_file=self.env_file, toml_file=self.toml_file
        ).settings


@dataclass(frozen=True)
class Step:
    """One step of the demo: a fraudctl command (run with ``--json`` in a child process)
    or, with ``builtin``, a method of :class:`Demo` (serving, which runs beside traffic)."""

    name: str
    title: str
    args: list[str] | None
    hint: str
    expected: tuple[int, ...] = (0,)
    status: str | None = None  # the result's "status" must be this
    builtin: str | None = None


def demo_steps(p: DemoPlan) -> list[Step]:
    """The demo, in order (``fraudctl demo --dry-run`` prints it)."""
    n = p.count
    promote_hint = "`fraudctl promote --history` shows which gate said no"
    stack_hint = (
        "start the services first: `make services` (or `fraudctl stack up --native`)"
        if p.profile == "stack"
        else "the embedded default needs no services; see `fraudctl doctor`"
    )
    steps = [
        Step("resources", "create the run's topics and bucket", None,
             "`fraudctl doctor` checks the broker, the S3 endpoint and keys",
             builtin="create_resources"),
    ] if p.profile == "stack" else []  # fmt: skip
    return [
        *steps,
        Step("doctor", "check the backends", ["doctor"], stack_hint),
        Step("produce", f"produce {n:,} events with delayed labels",
             ["produce", "--rate", "0", "--count", str(n), "--span", "48h",
              "--start", iso(p.now - 52 * HOUR), "--label-delay", "600", "--seed", "1"],
             "see `fraudctl produce --help`"),
        Step("materialize", "materialize: offline snapshots + online features",
             ["materialize"], "`fraudctl doctor` names an unreachable store"),
        Step("train-a", "train model A on the older half",
             ["train", "--since", iso(p.now - 40 * HOUR), "--until", iso(p.now - 16 * HOUR)],
             "training needs ≥ 1,000 labeled events with features: raise --count"),
        Step("drift-normal", "drift on normal traffic (expect ok)",
             ["drift", "--source", "events", "--current", p.window(16, 4)],
             "see `fraudctl drift --help`; the window must hold ≥ 500 events"),
        Step("promote-a-staging", "promote A to staging", ["promote", "--to", "staging"],
             promote_hint),
        Step("promote-a-production", "promote A to production (first model)",
             ["promote", "--to", "production"], promote_hint),
        Step("train-b", "retrain: model B on all of the history",
             ["train", "--since", iso(p.now - 40 * HOUR)], "see `fraudctl train --help`"),
        Step("promote-b-staging", "promote B to staging (the canary)",
             ["promote", "--to", "staging"],
             "B must score at least A's ROC AUC on the newest labeled events"),
        Step("serve", f"serve B as a {CANARY_PERCENT:g} % canary with shadow; send traffic",
             None, "see the server's log; `fraudctl serve --help`", builtin="serve_canary"),
        Step("produce-drifted", f"produce a drifted stream ({DRIFT_SPEC})",
             ["produce", "--rate", "0", "--count", str(n // 12), "--span", "235m",
              "--start", iso(p.now - 4 * HOUR), "--label-delay", "60", "--seed", "2",
              "--population-seed", "1", "--drift", DRIFT_SPEC],
             "see `fraudctl produce --help`"),
        Step("materialize-drifted", "materialize the drifted stream", ["materialize"],
             "`fraudctl doctor` names an unreachable store"),
        Step("quality", "live quality of the served traffic from its labels",
             ["quality", "--window", "last:2h", "--by", "variant"],
             "see `fraudctl quality --help`; a 10 % canary of a short run has too few "
             "labels yet (exit 4, insufficient_data)", expected=(0, 4)),
        Step("drift-drifted", "drift on the drifted stream (expect drift)",
             ["drift", "--source", "events", "--current", p.window(4, 0)],
             "the drifted stream should move transaction_amount past PSI 0.3",
             expected=(4,), status="drift"),
        Step("train-c", "train model C on the drifted data",
             ["train", "--since", iso(p.now - 40 * HOUR)], "see `fraudctl train --help`"),
        Step("promote-c-refused", "promote C to staging (expect refused: drift)",
             ["promote", "--to", "staging"],
             "the drift gate should refuse while the newest drift result is drift",
             expected=(4,)),
    ]  # fmt: skip


class Demo:
    def __init__(self, plan: DemoPlan, progress: Callable[[str, StepRecord | None], None]):
        self.plan = plan
        self.progress = progress
        self.report = DemoReport(
            profile=plan.profile, home=str(plan.home), run_id=plan.run_id,
            started_at=iso(plan.now),
        )  # fmt: skip
        self.env = dict(os.environ)

    # -- running one step ---------------------------------------------------------------

    def command(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "fraudctl", *self.plan.global_args(), *args]

    def step(
        self, name: str, title: str, args: list[str], hint: str, expected: tuple[int, ...] = (0,)
    ) -> Any:
        """Run ``fraudctl <args> --json``; return its parsed JSON."""
        self.progress(title, None)
        self.plan.logs.mkdir(parents=True, exist_ok=True)
        log = self.plan.logs / f"{len(self.report.steps) + 1:02d}-{name}.log"
        started = time.monotonic()
        with log.open("w") as err:
            done = subprocess.run(
                self.command([*args, "--json"]), stdout=subprocess.PIPE, stderr=err,
                text=True, env=self.env, check=False,
            )  # fmt: skip
        result: Any = None
        if done.stdout.strip():
            try:
                result = json.loads(done.stdout)
            except json.JSONDecodeError:
                result = {"stdout": done.stdout[-2000:]}
        record = StepRecord(
            name=name, title=title, command="fraudctl " + " ".join(args),
            exit_code=done.returncode, expected=list(expected),
            seconds=round(time.monotonic() - started, 2), log=str(log), result=result,
            ok=done.returncode in expected,
        )  # fmt: skip
        self.finish_step(record, hint)
        return result

    def finish_step(self, record: StepRecord, hint: str) -> None:
        self.report.steps.append(record)
        self.progress(record.title, record)
        if not record.ok:
            self.report.failed_step = record.name
            last = _last_line(Path(record.log)) if record.log else ""
            if not last and record.result is not None:  # e.g. doctor --json: all on stdout
                last = _brief(record.result)
            raise DemoStepFailed(
                f"demo step '{record.title}' failed: `{record.command}` exited "
                f"{record.exit_code}, expected {record.expected}" + (f" ({last})" if last else ""),
                hint=f"{hint}; its log: {record.log}",
                exit_code=record.exit_code if record.exit_code != 0 else 1,
            )

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> DemoReport:
        started = time.monotonic()
        results: dict[str, Any] = {}
        for step in demo_steps(self.plan):
            if step.builtin is not None:
                results[step.name] = getattr(self, step.builtin)()
                continue
            assert step.args is not None
            result = self.step(step.name, step.title, step.args, step.hint, step.expected)
            results[step.name] = result
            if step.status is not None and (result or {}).get("status") != step.status:
                record = self.report.steps[-1]
                record.ok = False
                self.finish_step(record, f"{step.hint} (its status was not {step.status!r})")
        self.report.seconds = round(time.monotonic() - started, 1)
        self.report.summary = self.summarize(
            results["produce"], results["materialize"],
            [results["train-a"], results["train-b"], results["train-c"]],
            results["drift-normal"], results["drift-drifted"], results["serve"],
            results["promote-c-refused"], results["quality"],
        )  # fmt: skip
        self.report.ok = True
        return self.report

    def create_resources(self) -> None:
        """The run's own topics (one partition by default) and bucket on the stack; the
        shared ones `stack up` made are left alone."""
        from fraudctl.adapters.probes import ensure_bucket, ensure_topics

        started = time.monotonic()
        settings = self.plan.settings()
        record = StepRecord(
            name="resources", title=f"create the run's topics and bucket {settings.s3_bucket}",
            command="(in process)", exit_code=0, expected=[0], seconds=0.0, log="",
        )  # fmt: skip
        try:
            ensure_topics(settings)
            ensure_bucket(settings)
        except FraudctlError as exc:
            record.ok, record.exit_code, record.result = False, int(exc.exit_code), str(exc)
        record.seconds = round(time.monotonic() - started, 2)
        self.finish_step(record, "`fraudctl doctor` checks the broker, the S3 endpoint and keys")

    # -- serving with a canary and shadow -----------------------------------------------

    def serve_canary(self) -> dict[str, Any]:
        """Start `fraudctl serve --canary 10 --shadow`, send scored traffic, read
        `canary status`, stop the server."""
        from fraudctl.errors import BackendUnavailable

        title = f"serve B as a {CANARY_PERCENT:g} % canary with shadow; send traffic"
        self.progress(title, None)
        from fraudctl.cli.common import free_port_pair

        port = self.plan.port or free_port_pair()
        log = self.plan.logs / f"{len(self.report.steps) + 1:02d}-serve.log"
        args = ["serve", "--port", str(port), "--canary", f"{CANARY_PERCENT:g}", "--shadow"]
        started = time.monotonic()
        hint = "see the server's log; `fraudctl serve --help`"
        with log.open("w") as err:
            server = subprocess.Popen(
                self.command([*args, "--json"]), stdout=subprocess.PIPE, stderr=err,
                text=True, env=self.env,
            )  # fmt: skip
        record = StepRecord(
            name="serve", title=title, command="fraudctl " + " ".join(args), exit_code=0,
            expected=[0], seconds=0.0, log=str(log),
        )  # fmt: skip
        try:
            try:
                url, produced = self._traffic(server)
            except (OSError, ValueError, KeyError, BackendUnavailable) as exc:
                record.ok, record.result = False, {"error": str(exc)}
                record.exit_code = server.poll() or 1
                self.finish_step(record, hint)  # raises
            record.seconds = round(time.monotonic() - started, 2)
            variants = produced.get("score_variants") or {}
            record.result = {"url": url, "rows": produced.get("scored", 0), "variants": variants,
                             "score_p95_ms": produced.get("score_p95_ms")}  # fmt: skip
            self.finish_step(record, hint)
            time.sleep(1.5)  # the server's live statistics sync every second
            status = self.step(
                "canary-status", "canary status", ["canary", "status", "--url", url],
                "the server stopped answering; see its log",
            )  # fmt: skip
        finally:
            stop_server(server)
        return {"rows": produced.get("scored", 0), "variants": variants, "status": status}

    def _traffic(self, server: subprocess.Popen[str]) -> tuple[str, dict[str, Any]]:
        """Wait for the server's ready line, then send it TRAFFIC_ROWS new events of the
        history's users as the payment system would: `fraudctl produce --score`, each
        event published to the bus too, its label right after (event times just before
        the drifted window, so neither drift window holds them)."""
        assert server.stdout is not None
        ready_line = server.stdout.readline()
        if not ready_line:
            server.wait(timeout=60)
            raise OSError(f"the server exited {server.returncode} before it was ready")
        url = str(json.loads(ready_line)["url"])
        args = ["produce", "--rate", "0", "--count", str(TRAFFIC_ROWS), "--seed", "5",
                "--population-seed", "1", "--span", "30m",
                "--start", iso(self.plan.now - 5 * HOUR), "--label-delay", "0",
                "--score", url, "--json"]  # fmt: skip
        done = subprocess.run(
            self.command(args), capture_output=True, text=True, env=self.env, check=False
        )
        if done.returncode != 0:
            raise OSError(f"`fraudctl {' '.join(args)}` exited {done.returncode}: "
                          f"{_last_line_of(done.stderr)}")  # fmt: skip
        produced: dict[str, Any] = json.loads(done.stdout)
        if produced.get("score_failed"):
            raise OSError(f"{produced['score_failed']} requests failed: {produced['score_errors']}")
        return url, produced

    # -- the summary ------------------------------------------------------------------

    def aliases(self) -> dict[str, str | None]:
        """Where the registry's aliases point now (read back, not assumed)."""
        from fraudctl.bootstrap import wire
        from fraudctl.gates import BASELINE_ALIASES

        return wire(self.plan.settings()).registry.aliases(BASELINE_ALIASES)

    def summarize(
        self,
        produced: dict[str, Any],
        materialized: dict[str, Any],
        trained: list[dict[str, Any]],
        drift_ok: dict[str, Any],
        drift_found: dict[str, Any],
        served: dict[str, Any],
        refused: dict[str, Any],
        quality: dict[str, Any],
    ) -> dict[str, Any]:
        drifted_steps = [s for s in self.report.steps if s.name == "produce-drifted"]
        canary = served["status"].get("variants", {}).get("canary", {})
        variants = served["variants"]
        top = sorted(drift_found.get("features", []), key=lambda f: -f["psi"])[:3]
        tracking = trained[0].get("tracking_uri", "")
        return {
            "events": {
                "history": produced.get("published"),
                "drifted": drifted_steps[0].result.get("published") if drifted_steps else None,
                "materialized_valid": materialized.get("valid"),
            },
            "models": [
                {
                    "label": label,
                    "version": t.get("version"),
                    "roc_auc": t.get("metrics", {}).get("roc_auc"),
                    "run_id": t.get("run_id"),
                }
                for label, t in zip("ABC", trained, strict=True)
            ],
            "aliases": self.aliases(),
            "canary": {
                "weight_percent": CANARY_PERCENT,
                "share": round(variants.get("canary", 0) / max(served["rows"], 1), 4),
                "requests": canary.get("requests"),
                "error_rate": canary.get("error_rate"),
                "p95_ms": canary.get("p95_ms"),
                "shadow_agreement": served["status"]
                .get("variants", {})
                .get("baseline", {})
                .get("shadow_agreement"),
            },
            "drift": {
                "normal": {"status": drift_ok.get("status"), "score": drift_ok.get("drift_score")},
                "drifted": {
                    "status": drift_found.get("status"),
                    "score": drift_found.get("drift_score"),
                    "top": {f["feature"]: round(f["psi"], 3) for f in top},
                },
                "report": drift_found.get("report"),
                "report_uri": drift_found.get("report_uri"),
            },
            "quality": {
                g["group"]: {
                    "status": g["status"],
                    "labeled": g["counts"]["labeled"],
                    "roc_auc": (g["figures"].get("roc_auc") or {}).get("value"),
                }
                for g in (quality or {}).get("groups", [])
            },
            "refused": {
                "version": refused.get("version"),
                "outcome": refused.get("outcome"),
                "reason": refused.get("reason"),
            },
            "where": {
                "mlflow_ui": mlflow_ui_command(tracking),
                "plots": f"MLflow run {trained[-1].get('run_id')}, artifacts plots/",
                "logs": str(self.plan.logs),
                "home": str(self.plan.home),
            },
        }


def mlflow_ui_command(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def stop_server(
    server: subprocess.Popen[str], signum: int = signal.SIGINT, timeout_s: float = 60.0
) -> None:
    """Stop a child with ``signum``, then SIGKILL after ``timeout_s``; wait for it."""
    if server.poll() is not None:
        return
    server.send_signal(signum)
    try:
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _brief(result: Any) -> str:
    """What a failed step's JSON says went wrong: doctor's failed checks, else the start."""
    if isinstance(result, dict) and isinstance(result.get("checks"), list):
        failed = [c for c in result["checks"] if isinstance(c, dict) and not c.get("ok")]
        return "; ".join(f"{c.get('part')} ({c.get('target')}): {c.get('detail')}" for c in failed)
    return json.dumps(result, default=str)[:300]


def _last_line_of(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text().splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def demo_home(base: Path, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return base / "demo" / stamp
