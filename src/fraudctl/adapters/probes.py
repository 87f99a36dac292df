"""Connect to each configured backend, provision it, and say precisely what is wrong.

The only module (with the other adapters) that imports vendor clients; every failure
leaves here as a :class:`BackendUnavailable` naming the address and the fix.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from fraudctl.adapters.bus import stream_topics
from fraudctl.config import Settings, SqliteConfig, mask_url
from fraudctl.errors import BackendUnavailable, FraudctlError

if TYPE_CHECKING:
    from fraudctl.adapters.kafka_bus import KafkaBus

STACK_HINT = "is the stack up? `fraudctl stack up --native` (or `make services`)"


@dataclass(frozen=True)
class CheckResult:
    part: str
    backend: str
    target: str
    ok: bool
    detail: str
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- Kafka API ------------------------------------------------------------------------


def kafka_bus(settings: Settings) -> KafkaBus:
    from fraudctl.adapters.kafka_bus import KafkaBus

    return KafkaBus(settings.kafka_bootstrap)


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the ones created."""
    return kafka_bus(settings).ensure_topics(stream_topics(settings), settings.topic_partitions)


# -- S3 API ---------------------------------------------------------------------------


def s3_client(settings: Settings) -> Any:
    import urllib3
    from minio import Minio

    parts = urlsplit(settings.s3_endpoint)
    return Minio(
        parts.netloc,
        access_key=settings.require_secret("s3_access_key"),
        secret_key=settings.require_secret("s3_secret_key"),
        secure=parts.scheme == "https",
        # Fail fast on a dead endpoint: callers retry where waiting makes sense.
        http_client=urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2, read=10),
            retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=(500, 502, 503)),
        ),
    )


def _s3_error(settings: Settings, exc: Exception) -> BackendUnavailable:
    from minio.error import S3Error

    if isinstance(exc, S3Error) and exc.code in (
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ):
        return BackendUnavailable(
            f"S3 API at {settings.s3_endpoint} refused the credentials ({exc.code})",
            hint="check FRAUDCTL_S3_ACCESS_KEY / FRAUDCTL_S3_SECRET_KEY in .env",
        )
    return BackendUnavailable(
        f"S3 API at {settings.s3_endpoint} is unavailable ({type(exc).__name__}: {exc})",
        hint=STACK_HINT,
    )


def bucket_exists(settings: Settings) -> bool:
    try:
        return bool(s3_client(settings).bucket_exists(settings.s3_bucket))
    except FraudctlError:
        raise
    except Exception as exc:
        raise _s3_error(settings, exc) from exc


def ensure_bucket(settings: Settings) -> bool:
    """Create the bucket if missing and prove it accepts a write; True if created."""
    client = s3_client(settings)
    try:
        created = False
        if not client.bucket_exists(settings.s3_bucket):
            client.make_bucket(settings.s3_bucket)
            created = True
        # The S3 server may list the bucket before it can store into it: prove a write.
        import io

        client.put_object(settings.s3_bucket, ".fraudctl-ready", io.BytesIO(b"ok"), 2)
        return created
    except Exception as exc:
        raise _s3_error(settings, exc) from exc


# -- Redis ----------------------------------------------------------------------------


def redis_client(settings: Settings) -> Any:
    return redis_at(settings.redis_url, settings.redis_password)


def redis_at(url: str, password: SecretStr | None) -> Any:
    """A Redis client with bounded waits (an unreachable Redis fails the call)."""
    import redis

    secret = password.get_secret_value() if password else None
    return redis.Redis.from_url(url, password=secret, socket_connect_timeout=2, socket_timeout=2)


def redis_ping(settings: Settings) -> None:
    import redis

    try:
        redis_client(settings).ping()
    except redis.AuthenticationError as exc:
        raise BackendUnavailable(
            f"Redis at {mask_url(settings.redis_url)} refused the password",
            hint="check FRAUDCTL_REDIS_PASSWORD in .env",
        ) from exc
    except redis.RedisError as exc:
        raise BackendUnavailable(
            f"Redis at {mask_url(settings.redis_url)} is unavailable ({exc})", hint=STACK_HINT
        ) from exc


# -- MLflow ---------------------------------------------------------------------------


def mlflow_health(settings: Settings) -> None:
    """The tracking server answers its REST API (or the sqlite store opens)."""
    uri = settings.mlflow_uri
    scheme = urlsplit(uri).scheme
    if scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():  # the registry creates it (registry.seed_embedded_store)
            writable_dir(path.parent)
            return
        try:
            sqlite3.connect(path).close()
        except sqlite3.Error as exc:
            raise BackendUnavailable(
                f"MLflow store {uri} cannot be opened ({exc})", hint="check FRAUDCTL_HOME"
            ) from exc
        return
    if scheme not in ("http", "https"):
        return
    request = urllib.request.Request(
        f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
        data=json.dumps({"max_results": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BackendUnavailable(
            f"MLflow tracking server at {mask_url(uri)} is unavailable ({exc})", hint=STACK_HINT
        ) from exc


# -- local directories ----------------------------------------------------------------


def writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise BackendUnavailable(
            f"{path} is not writable ({exc.strerror})",
            hint="point FRAUDCTL_HOME at a writable directory",
        ) from exc


# -- doctor ---------------------------------------------------------------------------


def _check(part: str, backend: str, target: str, probe: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(part, backend, target, True, probe())
    except FraudctlError as exc:
        return CheckResult(part, backend, target, False, exc.message, exc.hint)


def check_all(settings: Settings) -> list[CheckResult]:
    """Connect, authenticate and look for topics and the bucket on every backend."""
    home = settings.home
    results: list[CheckResult] = []

    if settings.bus == "kafka":

        def kafka() -> str:
            existing = kafka_bus(settings).topics()
            missing = [t for t in stream_topics(settings) if t not in existing]
            if missing:
                raise BackendUnavailable(
                    f"topics missing: {', '.join(missing)}",
                    hint="`fraudctl stack up --native` creates them",
                )
            return "connected; topics " + ", ".join(stream_topics(settings))

        results.append(_check("event bus", "kafka", settings.kafka_bootstrap, kafka))
    else:
        results.append(
            _check("event bus", "filelog", str(home / "bus"), lambda: _ok_dir(home / "bus"))
        )

    if settings.offline_store == "s3":

        def s3() -> str:
            if not bucket_exists(settings):
                raise BackendUnavailable(
                    f"bucket {settings.s3_bucket!r} does not exist",
                    hint="`fraudctl stack up --native` creates it",
                )
            return f"authenticated; bucket {settings.s3_bucket}"

        results.append(_check("offline store", "s3", settings.s3_endpoint, s3))
    else:
        results.append(
            _check(
                "offline store", "localfs", str(home / "offline"), lambda: _ok_dir(home / "offline")
            )
        )

    def redis_ok() -> str:
        redis_ping(settings)
        return "PING answered"

    if settings.online_store == "redis":
        results.append(_check("online store", "redis", mask_url(settings.redis_url), redis_ok))
    else:
        online = settings.backends().online_store
        where = online.path.parent if isinstance(online, SqliteConfig) else home / "feast"
        results.append(_check("online store", "sqlite", str(where), lambda: _ok_dir(where)))
        users = [k for k in ("dedupe_store", "promote_lock") if getattr(settings, k) == "redis"]
        if users:  # Redis without the online store: checked for what uses it
            part = " and ".join(k.replace("_", " ") for k in users)
            results.append(_check(part, "redis", mask_url(settings.redis_url), redis_ok))

    def mlflow_ok() -> str:
        mlflow_health(settings)
        return "tracking API answered"

    scheme = urlsplit(settings.mlflow_uri).scheme
    results.append(
        _check(
            "registry + tracking", f"mlflow ({scheme})", mask_url(settings.mlflow_uri), mlflow_ok
        )
    )
    return results


def _ok_dir(path: Path) -> str:
    writable_dir(path)
    return "writable (embedded)"
