"""MLflow for fraudctl: the tracking server and model registry of the active profile.

``stack``: the tracking server at ``FRAUDCTL_MLFLOW_URI`` (artifacts proxied to S3 by the
server, so clients need no S3 keys).  ``local``: ``sqlite:///$FRAUDCTL_HOME/mlflow.db``
with artifacts under ``$FRAUDCTL_HOME/mlartifacts``.

Every call is bounded (few retries, short timeouts) so an unreachable registry fails
the command with exit 3 naming the URI instead of hanging in MLflow's default backoff
(seven retries, minutes).  MLflow's chatter goes to stderr: stdout belongs to ``--json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fraudctl.adapters.feast_repo import import_feast
from fraudctl.config import Settings, environ, mask_url
from fraudctl.errors import BackendUnavailable

if TYPE_CHECKING:
    from fraudctl.model import LoadedModel
    from fraudctl.ports import ModelRun, Registered

log = logging.getLogger(__name__)

# Bounded HTTP behaviour for MLflow's REST client, unless the user chose otherwise.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
MODEL_FILE = "model.skops"  # the pipeline, saved with skops (artifact ``model``)
QUIET_LOGGERS = ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.models")


class Registry:
    """Where runs are tracked and models registered: the MLflow implementation of
    :class:`fraudctl.ports.ModelRegistry` (serving loads, promotion moves aliases and
    tags, drift logs runs), and the one place fraudctl talks to MLflow. ``session()``
    is for what is still written against MLflow itself: training's run (issue 14)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.uri = settings.mlflow_uri
        self.where = mask_url(self.uri)
        self.model_name = settings.model_name

    @property
    def is_local(self) -> bool:
        return urlsplit(self.uri).scheme == "sqlite"

    def artifact_root(self) -> str | None:
        """Where new experiments keep artifacts: under FRAUDCTL_HOME for the embedded store
        (MLflow's default would be ./mlruns of whatever directory the command ran in);
        the server's own (proxied) root otherwise."""
        if self.is_local:
            root = self.settings.home / "mlartifacts"
            root.mkdir(parents=True, exist_ok=True)
            return root.as_uri()
        return None

    def unavailable(self, action: str, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"MLflow registry at {self.where}: {action} failed ({type(exc).__name__}: {exc})",
            hint="is the tracking server up? `fraudctl doctor`"
            if not self.is_local
            else "check that FRAUDCTL_HOME is writable",
        )

    def check(self) -> None:
        """Fail fast (exit 3, naming the URI) before any expensive work."""
        from fraudctl.adapters.probes import mlflow_health

        mlflow_health(self.settings)

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """MLflow pointed at this registry, bounded and quiet, for the block; yields the
        ``mlflow`` module.  MLflow's own failures (connection refused, 5xx after the
        retries) become :class:`BackendUnavailable`."""
        limits = {key: value for key, value in HTTP_LIMITS.items() if key not in os.environ}
        with (
            environ(limits),
            contextlib.redirect_stdout(sys.stderr),
            _quiet_logs(),
            warnings.catch_warnings(),
        ):
            # MLflow's own use of deprecated SQLAlchemy and pydantic APIs is not ours to fix.
            warnings.simplefilter("ignore", DeprecationWarning)
            import mlflow
            from mlflow.exceptions import MlflowException

            if self.is_local:
                default = (self.settings.home / "mlartifacts" / "0").as_uri()
                seed_embedded_store(self.uri, default)
            else:
                # Feast registers an MLflow request-header provider (an entry point), so
                # MLflow's first HTTP request imports Feast: the fast way, first.
                import_feast()
            mlflow.set_tracking_uri(self.uri)
            mlflow.set_registry_uri(self.uri)
            try:
                yield mlflow
            except MlflowException as exc:
                if _is_unreachable(exc):
                    raise self.unavailable("a request", exc) from exc
                raise
            except (ConnectionError, TimeoutError) as exc:
                raise self.unavailable("a request", exc) from exc
            except Exception as exc:
                storage = self._local_storage_failure(exc)
                if storage is None:
                    raise
                raise storage from exc

    def _local_storage_failure(self, exc: BaseException) -> BackendUnavailable | None:
        """The embedded store's disk full or read-only (SQLite's result code, on the chain
        SQLAlchemy and MLflow wrap it in), or an OSError writing its artifacts."""
        import sqlite3

        from fraudctl.adapters.dedupe import sqlite_code
        from fraudctl.errors import storage_error

        for seen in _chain(exc):
            if isinstance(seen, OSError):
                mapped = storage_error(seen)
                if isinstance(mapped, BackendUnavailable):
                    return mapped
            if isinstance(seen, sqlite3.Error):
                text = str(seen)
                where = self.uri.removeprefix("sqlite:///")
                code = sqlite_code(seen)
                if code == sqlite3.SQLITE_FULL:
                    return BackendUnavailable(
                        f"no space left for the MLflow store {where} ({text})",
                        hint="free space on that disk, or set FRAUDCTL_HOME to a disk with "
                        "room; registered versions are kept",
                    )
                if code == sqlite3.SQLITE_READONLY:
                    return BackendUnavailable(
                        f"cannot write the MLflow store {where} ({text})",
                        hint="make it writable, or set FRAUDCTL_HOME to a writable directory",
                    )
        return None

    def experiment_id(self, mlflow: Any, name: str) -> str:
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        return str(mlflow.create_experiment(name, artifact_location=self.artifact_root()))

    # -- the ModelRegistry port (fraudctl.ports) ---------------------------------------

    def aliases(self, names: Iterable[str]) -> dict[str, str | None]:
        with self._session() as mlflow:
            return {str(name): _resolve(mlflow, self.model_name, name) for name in names}

    def has_version(self, version: str) -> bool:
        from mlflow.exceptions import MlflowException

        with self._session() as mlflow:
            try:
                mlflow.MlflowClient().get_model_version(self.model_name, version)
            except MlflowException as exc:
                if _is_unreachable(exc):
                    raise
                return False
            return True

    def set_alias(self, alias: str, version: str) -> None:
        with self._session() as mlflow:
            mlflow.MlflowClient().set_registered_model_alias(self.model_name, alias, version)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        with self._session() as mlflow:
            client = mlflow.MlflowClient()
            for key, value in tags.items():
                client.set_model_version_tag(self.model_name, version, key, value)

    def version_tags(self, version: str) -> dict[str, str]:
        with self._session() as mlflow:
            found = mlflow.MlflowClient().get_model_version(self.model_name, version)
            return dict(found.tags)

    def lineage(self, version: str) -> dict[str, str]:
        with self._session() as mlflow:
            client = mlflow.MlflowClient()
            run_id = client.get_model_version(self.model_name, version).run_id
            if not run_id:
                return {}
            return dict(client.get_run(run_id).data.tags)

    def load(self, version: str, alias: str) -> LoadedModel:
        with self._session() as mlflow:
            return load_version(self, mlflow, version, alias)

    def log_run(
        self,
        experiment: str,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[Path, str],
    ) -> str:
        with self._session() as mlflow:
            experiment_id = self.experiment_id(mlflow, experiment)
            with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
                mlflow.log_params(dict(params))
                mlflow.log_metrics(dict(metrics))
                mlflow.set_tags(dict(tags))
                for path, directory in artifacts.items():
                    mlflow.log_artifact(str(path), directory)
                run_id: str = run.info.run_id
                return run_id

    def register(self, run: ModelRun) -> Registered:
        """One MLflow run (params, metrics, figures, documents, tables, lineage tags, the
        training data as dataset inputs) and the model — a Python model from code
        (``adapters/mlflow_model.py``) over the pipeline saved with skops, with its
        signature and input example — registered as a new version of :attr:`model_name`
        carrying ``run.version_tags`` and the run id."""
        import tempfile

        import skops.io

        with self._session() as mlflow, tempfile.TemporaryDirectory(prefix="fraudctl-run-") as tmp:
            from mlflow.models import infer_signature

            from fraudctl.adapters import mlflow_model

            example = run.example
            threshold = float(run.metadata["threshold"])
            answer = mlflow_model.outputs(run.model.predict_proba(example)[:, 1], threshold)
            signature = infer_signature(example, answer)
            model_file = Path(tmp) / MODEL_FILE
            skops.io.dump(run.model, model_file)
            experiment_id = self.experiment_id(mlflow, self.model_name)
            with mlflow.start_run(experiment_id=experiment_id) as tracked:
                mlflow.log_params(run.params)
                mlflow.log_metrics(run.metrics)
                mlflow.set_tags(run.tags)
                _log_datasets(mlflow, run)
                for path, figure in run.figures.items():
                    mlflow.log_figure(figure, path)
                for path, document in run.documents.items():
                    mlflow.log_dict(document, path)
                for path, frame in run.tables.items():
                    local = Path(tmp) / Path(path).name
                    frame.to_parquet(local, index=False)
                    mlflow.log_artifact(str(local), str(Path(path).parent))
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=mlflow_model.__file__,
                    artifacts={"model": str(model_file)},
                    model_config={
                        "inputs": list(example.columns),
                        "threshold": threshold,
                        "trusted_types": run.trusted_types,
                    },
                    # Named, so MLflow need not load the model in a subprocess to infer them.
                    pip_requirements=_requirements(),
                    signature=signature,
                    input_example=example,
                    registered_model_name=self.model_name,
                    metadata=run.metadata,
                )
                version = str(info.registered_model_version)
                client = mlflow.MlflowClient()
                tags = {**run.version_tags, "run_id": tracked.info.run_id}
                for key, value in tags.items():
                    client.set_model_version_tag(self.model_name, version, key, str(value))
                from fraudctl.ports import Registered

                return Registered(tracked.info.run_id, experiment_id, version)


def _log_datasets(mlflow: Any, run: ModelRun) -> None:
    """Each part of the training data (fit, validation, holdout) as an MLflow dataset
    input of the run: its digest, schema and row count, its source the offline features
    snapshot, and the snapshot URIs of the events and labels it joined as tags."""
    snapshots = {k: v for k, v in run.tags.items() if k.startswith("fraudctl.snapshots.")}
    source = snapshots.get("fraudctl.snapshots.features", "")
    for context, frame in run.datasets.items():
        dataset = mlflow.data.from_pandas(
            frame, source=source, name=f"training-set-{context}", targets="label"
        )
        mlflow.log_input(dataset, context=context, tags=snapshots)


def seed_embedded_store(uri: str, default_artifacts: str) -> None:
    """Start a new SQLite store (``sqlite:///PATH``) as a copy of an empty one at the
    installed MLflow's schema instead of running MLflow's schema migrations on it (3-4 s
    per new home, measured; the copy takes milliseconds). The empty store is made once
    per MLflow version, by MLflow itself, under ``$XDG_CACHE_HOME/fraudctl`` (default
    ``~/.cache/fraudctl``); the copy's Default experiment keeps its artifacts at
    ``default_artifacts`` (this home's, or a tracking server's proxied root). The copy
    appears atomically and never replaces a store that exists, so concurrent first uses
    end with one store. Where the cache cannot be written, MLflow creates the store
    itself, as before."""
    import shutil
    import sqlite3
    import time

    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists():
        return
    try:
        template = _empty_store()
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.seed")
        shutil.copyfile(template, staging)
        try:
            now = int(time.time() * 1000)
            with contextlib.closing(sqlite3.connect(staging)) as db, db:
                db.execute(
                    "UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                    "last_update_time = ? WHERE experiment_id = 0",
                    (default_artifacts, now, now),
                )
            with contextlib.suppress(FileExistsError):  # another process seeded it first
                os.link(staging, path)
        finally:
            staging.unlink(missing_ok=True)
    except (OSError, sqlite3.Error) as exc:
        log.debug("embedded MLflow store not seeded (%s); MLflow creates it", exc)


def _empty_store() -> Path:
    """An empty MLflow store at the installed version's schema, made once and kept."""
    from importlib.metadata import version

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    template = Path(base) / "fraudctl" / f"mlflow-{version('mlflow')}-empty.db"
    if template.is_file():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    staging = template.with_name(f".{template.name}.{os.getpid()}.new")
    staging.unlink(missing_ok=True)
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{staging}").search_experiments()  # migrates
    os.replace(staging, template)
    return template


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("scikit-learn", "skops", "numpy", "scipy", "pandas", "mlflow")
    ]


def _resolve(mlflow: Any, model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if _is_unreachable(exc):
            raise
        return None
    return str(found.version)


def download_version(registry: Registry, mlflow: Any, version: str) -> Path:
    """The model directory of a version, downloaded once into
    ``$FRAUDCTL_HOME/models/NAME/VERSION`` (versions never change)."""
    import shutil
    import tempfile

    target = registry.settings.home / "models" / registry.model_name / version
    if (target / "MLmodel").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{registry.model_name}/{version}", dst_path=str(staging)
        )
        try:
            staging.rename(target)
        except OSError:  # another process got there first
            if not (target / "MLmodel").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_version(registry: Registry, mlflow: Any, version: str, alias: str) -> LoadedModel:
    """A registered version, loaded from the local cache (downloaded on first use).  A
    cached copy that no longer loads (a damaged ``model.skops``, a cut download) is
    moved aside and downloaded again, once; a version that still does not load is named
    with what to do."""
    import shutil

    path = download_version(registry, mlflow, version)
    try:
        return load_model_dir(path, registry.model_name, version, alias)
    except Exception as first:
        log.warning("cached model %s does not load (%s); downloading it again", path, first)
        shutil.rmtree(path, ignore_errors=True)
        path = download_version(registry, mlflow, version)
        try:
            return load_model_dir(path, registry.model_name, version, alias)
        except Exception as exc:
            raise BackendUnavailable(
                f"version {version} of {registry.model_name} in {registry.where} does not "
                f"load ({type(exc).__name__}: {exc})",
                hint="retrain (`fraudctl train`) and move the alias to the new version",
            ) from exc


def load_model_dir(path: Path, name: str, version: str, alias: str) -> LoadedModel:
    """Load an MLflow model directory written by ``train`` (``MLmodel`` and the skops
    file: ``artifacts/model.skops`` since models are Python models from code, or
    ``model.skops`` for versions logged as scikit-learn models) with skops and
    fraudctl's reviewed trusted types."""
    import skops.io
    import yaml

    from fraudctl.model import CATEGORIES, MODEL_INPUTS, LoadedModel, all_trusted_types
    from fraudctl.model_fast import compile_row_scorer

    meta = yaml.safe_load((path / "MLmodel").read_text()).get("metadata") or {}
    found = path / "artifacts" / MODEL_FILE
    model = skops.io.load(
        found if found.is_file() else path / MODEL_FILE, trusted=all_trusted_types()
    )
    fast = compile_row_scorer(model, MODEL_INPUTS, CATEGORIES)
    return LoadedModel(name, version, alias, model, float(meta.get("threshold", 0.5)), fast)


def _is_unreachable(exc: BaseException) -> bool:
    """Whether an MLflow failure is the registry not answering, by type, never by
    message: MLflow's REST client raises its ``MlflowException`` from inside an
    ``except``, so the transport error (connection refused, a timeout, the retries on
    5xx answers exhausted) is on the exception's chain; a server that says it is
    temporarily unavailable carries that error code."""
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE, ErrorCode

    transport = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError,
                 ConnectionError, TimeoutError)  # fmt: skip
    unavailable = ErrorCode.Name(TEMPORARILY_UNAVAILABLE)
    return any(
        isinstance(seen, transport)
        or (isinstance(seen, MlflowException) and seen.error_code == unavailable)
        for seen in _chain(exc)
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or while handling, outermost first."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    levels = {}
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
