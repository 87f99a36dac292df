"""The one configuration model of fraudctl.

Values come from five layers; the first that sets a key wins:

1. flags (``--profile``, ``--home``, ``--set KEY=VALUE`` and command options),
2. the process environment (``FRAUDCTL_*``),
3. the ``.env`` file (``FRAUDCTL_*`` lines; other lines are left alone),
4. ``fraudctl.toml`` (keys are the setting names, e.g. ``kafka_bootstrap``),
5. the defaults of the active profile (``local`` or ``stack``).

The profile is resolved first, through the same layers, because it picks the
defaults of every other key.  Every value remembers the layer it came from, so
``fraudctl config show`` can say why a value is what it is, and an invalid value is
reported with its key, its source and what is allowed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fraudctl.errors import ConfigError

ENV_PREFIX = "FRAUDCTL_"
TOML_FILE = "fraudctl.toml"
ENV_FILE = ".env"

Profile = Literal["local", "stack"]
Source = Literal["flag", "env", ".env", "fraudctl.toml", "default"]

# Values that are obviously copied from an example file rather than chosen.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "change_me", "placeholder", "secret", "password", "xxx", "todo"}
)
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")

# Ports the `stack` profile expects; compose/docker-compose.yml publishes exactly these
# and `fraudctl stack up --native` binds them.  They avoid the well-known ports
# (6379, 9000, 9092, 5000) so a machine's own services never collide with the stack.
STACK_PORTS: dict[str, int] = {"kafka": 19092, "redis": 16379, "s3": 19000, "mlflow": 15000}


class _Backend(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileLogBusConfig(_Backend):
    """The embedded, file-backed log (one host)."""

    type: Literal["filelog"] = "filelog"
    path: Path


class KafkaBusConfig(_Backend):
    """A Kafka-API broker (Redpanda, Kafka)."""

    type: Literal["kafka"] = "kafka"
    bootstrap: str


class LocalOfflineConfig(_Backend):
    type: Literal["localfs"] = "localfs"
    path: Path


class S3OfflineConfig(_Backend):
    type: Literal["s3"] = "s3"
    endpoint: str
    bucket: str
    prefix: str = "offline"
    access_key: SecretStr | None
    secret_key: SecretStr | None


class SqliteConfig(_Backend):
    """An SQLite file (the embedded online store, the embedded dedupe store)."""

    type: Literal["sqlite"] = "sqlite"
    path: Path


class RedisConfig(_Backend):
    type: Literal["redis"] = "redis"
    url: str
    password: SecretStr | None


class FileLockConfig(_Backend):
    """A file lease under the home: serialises one host's promotions."""

    type: Literal["file"] = "file"
    path: Path


class RedisLockConfig(RedisConfig):
    """A Redis key with an expiry: serialises every host's promotions."""

    key: str


class MlflowRegistryConfig(_Backend):
    type: Literal["mlflow"] = "mlflow"
    uri: str
    model_name: str


BusConfig = Annotated[FileLogBusConfig | KafkaBusConfig, Field(discriminator="type")]
OfflineConfig = Annotated[LocalOfflineConfig | S3OfflineConfig, Field(discriminator="type")]
OnlineConfig = Annotated[SqliteConfig | RedisConfig, Field(discriminator="type")]
DedupeConfig = Annotated[SqliteConfig | RedisConfig, Field(discriminator="type")]
LockConfig = Annotated[FileLockConfig | RedisLockConfig, Field(discriminator="type")]


class BackendsConfig(_Backend):
    """Every backend choice, each a ``type``-discriminated model with the parameters that
    choice needs (the shape of Feast's ``online_store: {type: redis, …}``).  Built from
    the settings by :meth:`Settings.backends`; the one place a choice is resolved."""

    bus: BusConfig
    offline_store: OfflineConfig
    online_store: OnlineConfig
    dedupe_store: DedupeConfig
    promote_lock: LockConfig
    registry: MlflowRegistryConfig


# ``fraudctl.toml`` may give a backend as a table, Feast style: ``[bus]`` with ``type``
# and its parameters.  Each table field is one setting (the flat keys stay the names in
# the environment, ``.env`` and ``--set``).
BACKEND_TABLES: dict[str, dict[str, str]] = {
    "bus": {"type": "bus", "bootstrap": "kafka_bootstrap"},
    "offline_store": {"type": "offline_store", "endpoint": "s3_endpoint", "bucket": "s3_bucket"},
    "online_store": {"type": "online_store", "url": "redis_url"},
    "dedupe_store": {"type": "dedupe_store", "url": "redis_url"},
    "promote_lock": {"type": "promote_lock", "url": "redis_url"},
    "registry": {"uri": "mlflow_uri", "model_name": "model_name"},
}


class Settings(BaseModel):
    """The effective configuration.  Build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Profile = Field(description="Picks the default of every backend.")
    home: Path = Field(description="Where embedded backends and local state live.")
    bus: Literal["filelog", "kafka"] = Field(description="Event bus backend.")
    offline_store: Literal["localfs", "s3"] = Field(description="Offline (Parquet) store.")
    online_store: Literal["sqlite", "redis"] = Field(description="Feast online store.")
    dedupe_store: Literal["sqlite", "redis"] = Field(
        description="Where materialize keeps the event ids it wrote and its freshness marks."
    )
    promote_lock: Literal["file", "redis"] = Field(
        description="What serialises promotions: a file lock (one host) or a Redis key (all)."
    )
    kafka_bootstrap: str = Field(description="Kafka-API bootstrap servers, host:port[,…].")
    topic_transactions: str = Field(description="Topic of live transactions.")
    topic_labels: str = Field(description="Topic of delayed true labels.")
    topic_dlq: str = Field(description="Dead-letter topic for records breaking the contract.")
    topic_partitions: int = Field(ge=1, le=1000, description="Partitions of created topics.")
    consumer_group: str = Field(min_length=1, description="Consumer group of materialize.")
    redis_url: str = Field(description="Redis URL (redis:// or rediss://).")
    redis_password: SecretStr | None = Field(description="Redis password (secret).")
    s3_endpoint: str = Field(description="S3 API endpoint URL.")
    s3_bucket: str = Field(description="Bucket for snapshots and MLflow artifacts.")
    s3_access_key: SecretStr | None = Field(description="S3 access key (secret).")
    s3_secret_key: SecretStr | None = Field(description="S3 secret key (secret).")
    mlflow_uri: str = Field(description="MLflow tracking URI (http(s):// or sqlite:///).")
    model_name: str = Field(min_length=1, description="Registered model name.")
    ray_address: str | None = Field(description="Existing Ray cluster to join; unset = local.")
    pseudonym_key: SecretStr | None = Field(
        description="Key of the hash that pseudonymises replayed user ids (secret)."
    )
    otlp_endpoint: str | None = Field(
        description="OTLP traces endpoint, 'console', or unset for no tracing."
    )
    pushgateway_url: str | None = Field(
        description="Prometheus Pushgateway for batch results (drift); unset: no push."
    )
    promote_auc_floor: float = Field(
        ge=0.5, le=1.0, description="ROC AUC a first 'staging' model must reach."
    )
    promote_auc_tolerance: float = Field(
        ge=0.0, le=0.5, description="How far below staging's ROC AUC a version may be."
    )
    promote_eval_events: int = Field(
        ge=200, description="Newest labeled events both models are scored on to promote."
    )
    promote_canary_min_requests: int = Field(
        ge=1, description="Requests a canary must have served before 'production'."
    )
    canary_max_error_rate: float = Field(
        ge=0, le=1, description="Canary error rate above which watch and promote say no."
    )
    canary_max_p95_ms: float = Field(
        gt=0, description="Canary p95 latency (ms) above which watch and promote say no."
    )
    drift_threshold: float = Field(
        gt=0, description="Drift score (largest PSI) at or above which drift is reported."
    )
    quality_max_label_delay_s: float = Field(
        gt=0,
        description="Seconds after which a prediction without a label counts as unlabeled "
        "(matured), not pending.",
    )
    quality_min_labels: int = Field(
        ge=1, description="Matured labels a variant needs before `quality` reports figures."
    )
    quality_min_positives: int = Field(
        ge=1, description="Fraud among the matured labels a variant needs for figures."
    )
    quality_top_k: int = Field(
        ge=1, description="k of the card precision top-k per day (`quality`)."
    )
    promote_quality_metric: Literal["roc_auc", "pr_auc"] = Field(
        description="Figure the production quality gate compares (canary vs baseline)."
    )
    promote_quality_margin: float = Field(
        ge=0,
        le=0.5,
        description="How much worse than the baseline the canary may be on that figure and "
        "still pass the quality gate (a non-inferiority margin).",
    )
    promote_quality_confidence: float = Field(
        gt=0.5, lt=1, description="Confidence of the quality gate's interval (two-sided)."
    )
    promote_quality_min_positives: int = Field(
        ge=1, description="Matured fraud labels each variant needs for the quality gate."
    )
    promote_quality_window_s: float = Field(
        gt=0, description="Seconds of served traffic the production quality gate reads."
    )
    serve_drain_s: float = Field(
        ge=0,
        le=600,
        description="Seconds a stopping Ray Serve replica keeps answering 503 (so a load "
        "balancer can take it out) before it exits.",
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",")]
        if not servers or not all(_HOST_PORT.match(s) for s in servers):
            raise ValueError("expected host:port[,host:port…], e.g. 127.0.0.1:19092")
        return ",".join(servers)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("mlflow_uri")
    @classmethod
    def _mlflow(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("http", "https", "sqlite", "postgresql", "mysql", "file", "databricks"):
            raise ValueError("expected http(s)://HOST:PORT, sqlite:///PATH or a database URI")
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET.match(value):
            raise ValueError("expected 3-63 lowercase letters, digits, '.' or '-'")
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp(cls, value: str | None) -> str | None:
        if value is None or value == "console" or urlsplit(value).scheme in ("http", "https"):
            return value
        raise ValueError("expected an http(s):// OTLP endpoint, 'console', or unset")

    @field_validator("redis_password", "s3_access_key", "s3_secret_key", "pseudonym_key")
    @classmethod
    def _not_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder from an example file; set a real secret in .env")
        return value

    @model_validator(mode="after")
    def _home_absolute(self) -> Settings:
        if not self.home.is_absolute():
            raise ValueError("home must be an absolute path")
        return self

    # -- convenience -------------------------------------------------------------------

    def require_secret(self, key: str) -> str:
        """Return a secret's value or fail with where to set it."""
        value = getattr(self, key)
        if value is None:
            raise ConfigError(
                f"{env_var(key)} is not set but the {self.profile!r} profile needs it",
                hint="set it in .env (see .env.example) or the environment",
            )
        secret: str = value.get_secret_value()
        return secret

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    def backends(self) -> BackendsConfig:
        """Each backend choice with its parameters (see :class:`BackendsConfig`)."""
        redis = {"url": self.redis_url, "password": self.redis_password}
        home = self.home
        return BackendsConfig.model_validate(
            {
                "bus": {"type": self.bus, "path": home / "bus"}
                if self.bus == "filelog"
                else {"type": "kafka", "bootstrap": self.kafka_bootstrap},
                "offline_store": {"type": "localfs", "path": home / "offline"}
                if self.offline_store == "localfs"
                else {
                    "type": "s3",
                    "endpoint": self.s3_endpoint,
                    "bucket": self.s3_bucket,
                    "access_key": self.s3_access_key,
                    "secret_key": self.s3_secret_key,
                },
                "online_store": {"type": "sqlite", "path": home / "feast" / "online.db"}
                if self.online_store == "sqlite"
                else {"type": "redis", **redis},
                "dedupe_store": {"type": "sqlite", "path": self.state_dir / "dedupe.db"}
                if self.dedupe_store == "sqlite"
                else {"type": "redis", **redis},
                "promote_lock": {"type": "file", "path": home / "promote.lock"}
                if self.promote_lock == "file"
                else {
                    "type": "redis",
                    **redis,
                    "key": f"fraudctl:promote-lock:{self.model_name}",
                },
                "registry": {"uri": self.mlflow_uri, "model_name": self.model_name},
            }
        )


SECRET_KEYS = frozenset(
    name for name, f in Settings.model_fields.items() if "secret" in (f.description or "")
)
KEYS: tuple[str, ...] = tuple(Settings.model_fields)


def env_var(key: str) -> str:
    return ENV_PREFIX + key.upper()


def profile_defaults(profile: Profile, home: Path) -> dict[str, Any]:
    """Every key's default under ``profile``; ``home`` is already resolved."""
    common: dict[str, Any] = {
        "topic_transactions": "transactions",
        "topic_labels": "labels",
        "topic_dlq": "transactions.dlq",
        "topic_partitions": 6,
        "consumer_group": "fraudctl-materialize",
        "kafka_bootstrap": f"127.0.0.1:{STACK_PORTS['kafka']}",
        "redis_url": f"redis://127.0.0.1:{STACK_PORTS['redis']}/0",
        "redis_password": None,
        "s3_endpoint": f"http://127.0.0.1:{STACK_PORTS['s3']}",
        "s3_bucket": "fraudctl",
        "s3_access_key": None,
        "s3_secret_key": None,
        "model_name": "fraud-detector",
        "ray_address": None,
        "pseudonym_key": None,
        "otlp_endpoint": None,
        "pushgateway_url": None,
        "promote_auc_floor": 0.8,
        "promote_auc_tolerance": 0.0,
        "promote_eval_events": 5000,
        "promote_canary_min_requests": 500,
        "canary_max_error_rate": 0.01,
        "canary_max_p95_ms": 200.0,  # the scoring SLO (docs/serve.md)
        "drift_threshold": 0.3,  # PSI's customary "significant shift"
        # Chargebacks arrive within days; the generator's labels within minutes.
        "quality_max_label_delay_s": 86_400.0,
        "quality_min_labels": 200,
        "quality_min_positives": 5,
        "quality_top_k": 100,  # the card precision top-k of the fraud-detection literature
        # The production quality gate (docs/quality.md#the-quality-gate).
        "promote_quality_metric": "roc_auc",
        "promote_quality_margin": 0.01,
        "promote_quality_confidence": 0.95,
        "promote_quality_min_positives": 20,
        "promote_quality_window_s": 7 * 86_400.0,
        # Nothing in front of `fraudctl serve` to deregister from: a short drain (Ray
        # Serve's own 30 s is for a load balancer; set it to that balancer's delay).
        "serve_drain_s": 2.0,
    }
    if profile == "stack":
        return common | {
            "bus": "kafka",
            "offline_store": "s3",
            "online_store": "redis",
            "dedupe_store": "redis",
            "promote_lock": "redis",
            "mlflow_uri": f"http://127.0.0.1:{STACK_PORTS['mlflow']}",
        }
    return common | {
        "bus": "filelog",
        "offline_store": "localfs",
        "online_store": "sqlite",
        "dedupe_store": "sqlite",
        "promote_lock": "file",
        "mlflow_uri": f"sqlite:///{home / 'mlflow.db'}",
    }


@dataclass(frozen=True)
class LoadedConfig:
    """Settings plus the layer each value came from."""

    settings: Settings
    sources: Mapping[str, Source]
    files: Mapping[str, Path | None] = field(default_factory=dict)

    def backend_rows(self) -> dict[str, dict[str, Any]]:
        """Each backend choice with its parameters, secrets and URL passwords masked."""
        dumped = self.settings.backends().model_dump(mode="json")
        return {
            name: {k: mask_value("", v) if k not in ("password", "access_key", "secret_key")
                   else (None if v is None else "****") for k, v in choice.items()}
            for name, choice in dumped.items()
        }  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        """Key, env var, masked value and source for every setting."""
        dumped = self.settings.model_dump(mode="json")
        return [
            {
                "key": key,
                "env": env_var(key),
                "value": mask_value(key, dumped[key]),
                "source": self.sources[key],
            }
            for key in KEYS
        ]


def mask_value(key: str, value: Any) -> Any:
    """Secrets become ``****``; passwords embedded in URLs are masked too."""
    if value is None:
        return None
    if key in SECRET_KEYS:
        return "****"
    if isinstance(value, str):
        return mask_url(value)
    return value


def mask_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.password is None:
        return value
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:****@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _normalize_key(raw: str, origin: str) -> str:
    key = raw.strip()
    if key.upper().startswith(ENV_PREFIX):
        key = key[len(ENV_PREFIX) :]
    key = key.lower().replace("-", "_")
    if key not in KEYS:
        raise ConfigError(
            f"unknown setting {raw!r} in {origin}",
            hint="known settings: " + ", ".join(KEYS),
        )
    return key


def _read_env_file(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    for name, value in dotenv_values(path).items():
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in _NON_SETTING_VARS:
            values[_normalize_key(name, str(path))] = value or ""
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix the file") from exc
    table = data.get("fraudctl", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [fraudctl] must be a table")
    flat: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, dict):
            flat.update(_backend_table(name, value, path))
        else:
            flat[_normalize_key(name, str(path))] = value
    return flat


def _backend_table(name: str, values: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """A ``[bus]``-style table as the settings it stands for."""
    fields = BACKEND_TABLES.get(name)
    if fields is None:
        raise ConfigError(
            f"{path}: [{name}] is not a backend table",
            hint="backend tables: " + ", ".join(f"[{t}]" for t in BACKEND_TABLES),
        )
    flat: dict[str, Any] = {}
    for field_name, value in values.items():
        key = fields.get(field_name)
        if key is None:
            raise ConfigError(
                f"{path}: [{name}] has no field {field_name!r}",
                hint=f"[{name}] takes: " + ", ".join(fields),
            )
        flat[key] = value
    return flat


# Environment variables with our prefix that steer loading rather than being settings.
_NON_SETTING_VARS = frozenset({"FRAUDCTL_CONFIG", "FRAUDCTL_ENV_FILE"})


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    env_file: Path | None = None,
    toml_file: Path | None = None,
) -> LoadedConfig:
    """Resolve the effective settings from all layers (see the module docstring).

    Empty values count as unset, so ``FRAUDCTL_RAY_ADDRESS=`` in a ``.env`` file means
    "use the default", not "the empty address".
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    if env_file is None:
        env_file = Path(environ.get("FRAUDCTL_ENV_FILE", cwd / ENV_FILE))
    if toml_file is None:
        toml_file = Path(environ.get("FRAUDCTL_CONFIG", cwd / TOML_FILE))

    layers: list[tuple[Source, dict[str, Any]]] = [
        ("flag", {_normalize_key(k, "flags"): v for k, v in (flags or {}).items()}),
        (
            "env",
            {
                _normalize_key(name, "the environment"): value
                for name, value in environ.items()
                if name.startswith(ENV_PREFIX)
                and name not in _NON_SETTING_VARS
                and name[len(ENV_PREFIX) :].lower() in KEYS
            },
        ),
        (".env", _read_env_file(env_file) if env_file.is_file() else {}),
        ("fraudctl.toml", _read_toml(toml_file) if toml_file.is_file() else {}),
    ]

    def pick(key: str) -> tuple[Any, Source] | None:
        for source, values in layers:
            value = values.get(key)
            if value is not None and value != "":
                return value, source
        return None

    raw: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for key in ("profile", "home"):
        found = pick(key)
        if found is not None:
            raw[key], sources[key] = found
    raw.setdefault("profile", "local")
    sources.setdefault("profile", "default")
    if raw["profile"] not in ("local", "stack"):
        _raise_invalid("profile", raw, sources, "expected one of: local, stack")
    home = Path(str(raw.get("home", "./.fraudctl"))).expanduser()
    raw["home"] = home if home.is_absolute() else (cwd / home).resolve()
    sources.setdefault("home", "default")

    for key, default in profile_defaults(raw["profile"], raw["home"]).items():
        found = pick(key)
        if found is None:
            raw[key], sources[key] = default, "default"
        else:
            raw[key], sources[key] = found

    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "profile"
        _raise_invalid(key, raw, sources, first["msg"].removeprefix("Value error, "))
    return LoadedConfig(
        settings=settings,
        sources=sources,
        files={
            ".env": env_file if env_file.is_file() else None,
            "fraudctl.toml": toml_file if toml_file.is_file() else None,
        },
    )


def _raise_invalid(
    key: str, raw: Mapping[str, Any], sources: Mapping[str, Source], why: str
) -> NoReturn:
    shown = mask_value(key, raw.get(key))
    raise ConfigError(
        f"invalid {env_var(key)}={shown!r} (from {sources.get(key, 'default')}): {why}",
        hint=f"fix it where it is set, or override it with --set {key}=VALUE",
    )


@contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then put back what was
    there (also removing what was not)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
