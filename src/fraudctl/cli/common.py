"""What every subcommand shares: the loaded config, `--json`, and rendering."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fraudctl.bootstrap import Wiring
    from fraudctl.config import LoadedConfig, Settings
    from fraudctl.rollout import RolloutPlan

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")
]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class AppState:
    """Global options, and the config loaded from them on first use."""

    flags: dict[str, str] = field(default_factory=dict)
    env_file: Path | None = None
    toml_file: Path | None = None
    debug: bool = False
    _loaded: LoadedConfig | None = None
    _wiring: Wiring | None = None

    def config(self) -> LoadedConfig:
        if self._loaded is None:
            from fraudctl.config import load_settings

            self._loaded = load_settings(
                self.flags, env_file=self.env_file, toml_file=self.toml_file
            )
        return self._loaded

    @property
    def settings(self) -> Settings:
        return self.config().settings

    @property
    def backends(self) -> Wiring:
        """The adapters of the loaded settings (:mod:`fraudctl.bootstrap`), built once."""
        if self._wiring is None:
            from fraudctl.bootstrap import wire

            self._wiring = wire(self.settings)
        return self._wiring


def global_args(flags: dict[str, str], env_file: Path | None, toml_file: Path | None) -> list[str]:
    """The global options that give a child ``fraudctl`` these settings: ``--profile``
    and ``--home`` when set, ``--set KEY=VALUE`` for the rest, the same files."""
    flags = dict(flags)
    args: list[str] = []
    for name in ("profile", "home"):
        if name in flags:
            args += [f"--{name}", flags.pop(name)]
    for key, value in flags.items():
        args += ["--set", f"{key}={value}"]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    if toml_file is not None:
        args += ["--config", str(toml_file)]
    return args


SERVE_ENGINES = ("ray", "uvicorn")


def check_engine(engine: str) -> None:
    """`serve --engine` and `run --engine`: Ray Serve or a single uvicorn process."""
    from fraudctl.errors import UsageError

    if engine not in SERVE_ENGINES:
        raise UsageError(f"--engine {engine!r} is not known", hint="use ray or uvicorn")


def free_port_pair() -> int:
    """A loopback port for a server whose next port is free too (Ray's direct ingress
    takes both): what `--port 0` of `demo` and `run` gets."""
    from fraudctl.errors import FraudctlError
    from fraudctl.stack.native import free_ports, port_is_free

    for _ in range(100):
        port = free_ports(("serve",))["serve"]
        if port_is_free(port + 1):
            return port
    raise FraudctlError("no free pair of loopback ports", hint="pass --port")


# The generator's fraud rate, shared by `produce` and `run` (its producer and history).
FraudRateOption = Annotated[float, typer.Option(min=0, max=0.5, help="Share of fraud events.")]
FRAUD_RATE = 0.02

# The progressive-delivery plan's options, shared by `run` and `canary step`.
CanaryStepsOption = Annotated[
    str, typer.Option(help="Canary weights (percent of users), rising, comma-separated.")
]
StepEveryOption = Annotated[
    str, typer.Option(help="The least time at each step before it may advance.")
]
StepDeadlineOption = Annotated[
    str | None,
    typer.Option(help="A step with no verdict this long is rolled back (default: 6 steps)."),
]


def rollout_plan(canary_steps: str, step_every: str, step_deadline: str | None) -> RolloutPlan:
    """The progressive-delivery plan of `run` and `canary step` from their options (the
    deadline defaults to six times the time at a step)."""
    from fraudctl.errors import UsageError
    from fraudctl.rollout import RolloutPlan
    from fraudctl.timespec import parse_duration

    try:
        steps = RolloutPlan.parse_steps(canary_steps)
    except ValueError as exc:
        raise UsageError(f"--canary-steps: {exc}", hint="e.g. --canary-steps 10,25,50") from exc
    step_s = parse_duration("--step-every", step_every)
    deadline_s = parse_duration("--step-deadline", step_deadline) if step_deadline else 6 * step_s
    try:
        return RolloutPlan(steps=steps, step_every_s=step_s, deadline_s=deadline_s)
    except ValueError as exc:
        raise UsageError(str(exc), hint="--step-deadline must be at least --step-every") from exc


def state_of(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def explicit(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave the option ``name`` (a parameter name), not its default."""
    source = ctx.get_parameter_source(name)  # Typer may carry its own click: by name
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def option_name(ctx: typer.Context, name: str) -> str:
    """The option as the user types it (``time_mode`` → ``--time``)."""
    for param in ctx.command.params:
        if param.name == name and param.opts:
            return max(param.opts, key=len)
    return "--" + name.replace("_", "-")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    return out


def status_mark(ok: bool) -> str:
    return "[green]ok[/green]" if ok else "[red]FAIL[/red]"


def key_values(data: Mapping[str, Any], title: str | None = None) -> Table:
    out = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for key, value in data.items():
        out.add_row(str(key), "" if value is None else str(value))
    return out


class GracefulStop:
    """First Ctrl-C (or SIGTERM) asks the loop to stop and flush; a second one aborts."""

    def __init__(self) -> None:
        self._requested = False
        self._previous: dict[int, object] = {}

    def requested(self) -> bool:
        return self._requested

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def reflow(text: str) -> str:
    """Join a hard-wrapped text's lines into paragraphs (blank lines separate them); a
    line that starts a list item (``-``, ``*``, ``1.``) or is indented stays a line."""
    import re

    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines: list[str] = []
        for line in block.splitlines():
            starts_item = re.match(r"\s+\S|[-*] |[0-9]+[.)] ", line) is not None
            if lines and not starts_item:
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def said_no() -> NoReturn:
    """Exit 4 after the result was printed, when the result itself is the "no" (a drift
    verdict, a refused promotion, a freshness breach, invalid records): the output is
    the answer, so no error document follows. A refusal *before* any result is
    :class:`fraudctl.errors.Refused` (message, hint, one JSON error document)."""
    from fraudctl.errors import ExitCode

    raise typer.Exit(ExitCode.REFUSED)


def verdict(
    outcome: dict[str, Any],
    as_json: bool,
    show: Callable[[dict[str, Any]], None],
    *,
    ok: bool,
    push_error: str | None = None,
) -> None:
    """Print a measured result (drift, quality): a warning when its gauges were not
    pushed, the JSON document or the table, then exit 4 when the result is a "no"."""
    if push_error:
        err_console.print(f"[yellow]warning[/yellow]: gauges not pushed: {push_error}")
    if as_json:
        print_json(outcome)
    else:
        show(outcome)
    if not ok:
        said_no()
