"""`fraudctl run`'s live terminal view (Rich Live, on stderr when it is a terminal and
without --json): one screen drawn from :meth:`fraudctl.services.run.Run.snapshot`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from fraudctl.services.run import Run

REDRAW_S = 0.5


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _figure(value: Any, unit: str, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _said(result: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in result.items()
        if k != "reason" and v is not None
    )


def render(snapshot: dict[str, Any], title: str) -> RenderableType:
    """The whole screen, from a snapshot (plain values)."""
    return Group(Text(title, style="bold"), _children(snapshot), _scoring(snapshot),
                 _canary(snapshot), _jobs(snapshot), _decisions(snapshot),
                 _recent(snapshot))  # fmt: skip


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=None, padding=(0, 2, 0, 0))
    for column in columns:
        table.add_column(column)
    return table


def _children(snapshot: dict[str, Any]) -> Table:
    stream = (snapshot.get("figures") or {}).get("stream") or {}
    table = _table("children", "child", "state", "restarts", "figures")
    for name, child in (snapshot.get("children") or {}).items():
        state = ("ready" if child.get("ready") else "starting") if name == "serve" else "running"
        if not child.get("running"):
            state = "[yellow]restarting[/yellow]"
        said = ""
        if name == "materialize":
            said = (f"stream {_figure(stream.get('events_per_s'), ' ev/s')}, freshness p95 "
                    f"{_figure(stream.get('freshness_p95_s'), ' s', 2)}")  # fmt: skip
        table.add_row(name, state, str(child.get("restarts", 0)), said)
    if snapshot.get("bootstrapping"):
        table.add_row("(bootstrap)", "no production model yet", "", "")
    return table


def _scoring(snapshot: dict[str, Any]) -> Table:
    serving = (snapshot.get("figures") or {}).get("serving") or {}
    table = _table("scoring (last 60 s)", "variant", "rows/s", "p95", "errors")
    for variant, row in serving.items():
        errors = row.get("error_rate")
        table.add_row(variant, _figure(row.get("per_s"), ""), _figure(row.get("p95_ms"), " ms"),
                      "-" if errors is None else f"{errors:.2%}")  # fmt: skip
    if not serving:
        table.add_row("-", "-", "-", "-")
    return table


def _canary(snapshot: dict[str, Any]) -> Text:
    rollout = snapshot.get("rollout")
    if rollout is None:
        return Text("canary: none in progress")
    canary = Text(f"canary: version {rollout['version']} at step {rollout['step']} "
                  f"({rollout['weight']:g} % of users)", style="bold cyan")  # fmt: skip
    if snapshot.get("held"):
        canary.append(f" - holding: {snapshot['held']}", style="default")
    return canary


def _jobs(snapshot: dict[str, Any]) -> Table:
    table = _table("jobs", "job", "next in", "last")
    last = snapshot.get("last") or {}
    for name, wait in (snapshot.get("next") or {}).items():
        event = last.get(name)
        said = "-"
        if event is not None:
            mark = "[green]ok[/green]" if event.get("ok") else "[red]failed[/red]"
            said = f"{mark} {_said(event.get('result') or {}) or event.get('error', '')}"
        table.add_row(name, _ago(wait), said)
    running = snapshot.get("job")
    if running is not None:
        table.add_row(
            f"[bold]{running['name']}[/bold]", "running", f"for {_ago(running['seconds'])}"
        )
    for name in snapshot.get("queue") or []:
        table.add_row(name, "queued", "")
    return table


def _decisions(snapshot: dict[str, Any]) -> Table:
    table = _table("last decisions", "at", "to", "version", "outcome", "reason")
    for decision in snapshot.get("decisions") or []:
        table.add_row(str(decision.get("decided_at") or "")[11:19], str(decision.get("to")),
                      str(decision.get("version")), str(decision.get("outcome")),
                      str(decision.get("reason") or ""))  # fmt: skip
    if not snapshot.get("decisions"):
        table.add_row("-", "", "", "", "")
    return table


def _recent(snapshot: dict[str, Any]) -> Text:
    recent = Text("recent: ", style="dim")
    recent.append(" | ".join(f"{str(e.get('at', ''))[11:19]} {e.get('event')}"
                             + (f" {e['child']}" if "child" in e else "")
                             + (f" {e['job']}" if "job" in e else "")
                             for e in (snapshot.get("recent") or [])[-5:]))  # fmt: skip
    return recent


class LiveView:
    """Redraws the screen at most every ``REDRAW_S``, from the run's own loop (no
    thread reads the run's state while it changes)."""

    def __init__(self, console: Console, title: str) -> None:
        from rich.live import Live

        self.title = title
        self._live = Live(console=console, auto_refresh=False, transient=False)
        self._drawn = 0.0
        self._started = time.monotonic()

    @contextmanager
    def shown(self) -> Iterator[LiveView]:
        with self._live:
            yield self

    def draw(self, run: Run) -> None:
        now = time.monotonic()
        if now - self._drawn < REDRAW_S:
            return
        self._drawn = now
        title = f"{self.title} · up {_ago(now - self._started)} · Ctrl-C stops it in order"
        self._live.update(render(run.snapshot(), title), refresh=True)
