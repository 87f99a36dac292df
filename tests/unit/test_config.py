from __future__ import annotations

from pathlib import Path

import pytest

from fraudctl.config import STACK_PORTS, load_settings, mask_url
from fraudctl.errors import ConfigError
from tests.conftest import RunCli


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_profile(tmp_path: Path) -> None:
    local = load_settings(environ={}, cwd=tmp_path)
    assert local.settings.profile == "local"
    assert local.settings.bus == "filelog"
    assert local.settings.online_store == "sqlite"
    assert local.settings.mlflow_uri == f"sqlite:///{tmp_path / '.fraudctl' / 'mlflow.db'}"
    assert local.sources["profile"] == "default"

    stack = load_settings({"profile": "stack"}, environ={}, cwd=tmp_path)
    assert stack.settings.bus == "kafka"
    assert stack.settings.offline_store == "s3"
    assert stack.settings.kafka_bootstrap == f"127.0.0.1:{STACK_PORTS['kafka']}"
    assert stack.settings.mlflow_uri == f"http://127.0.0.1:{STACK_PORTS['mlflow']}"


def test_the_dedupe_store_and_the_promotion_lock_are_choices_of_their_own(tmp_path: Path) -> None:
    from fraudctl.adapters.dedupe import RedisDedupe, SqliteDedupe, open_dedupe

    local = load_settings(environ={}, cwd=tmp_path)
    assert (local.settings.dedupe_store, local.settings.promote_lock) == ("sqlite", "file")
    stack = load_settings({"profile": "stack"}, environ={}, cwd=tmp_path)
    assert (stack.settings.dedupe_store, stack.settings.promote_lock) == ("redis", "redis")
    assert isinstance(open_dedupe(local.settings), SqliteDedupe)
    # Redis for the ids with the embedded online store: one setting, not the profile
    mixed = load_settings(environ={"FRAUDCTL_DEDUPE_STORE": "redis"}, cwd=tmp_path)
    assert mixed.settings.online_store == "sqlite" and mixed.sources["dedupe_store"] == "env"
    assert isinstance(open_dedupe(mixed.settings), RedisDedupe)
    shown = {row["key"]: row for row in mixed.rows()}
    assert shown["dedupe_store"]["source"] == "env" and shown["promote_lock"]["value"] == "file"


@pytest.mark.parametrize(
    ("layers", "expected", "source"),
    [
        ({"flag", "env", ".env", "toml"}, "flag-model", "flag"),
        ({"env", ".env", "toml"}, "env-model", "env"),
        ({".env", "toml"}, "dotenv-model", ".env"),
        ({"toml"}, "toml-model", "fraudctl.toml"),
        (set(), "fraud-detector", "default"),
    ],
)
def test_each_source_beats_the_next(
    tmp_path: Path, layers: set[str], expected: str, source: str
) -> None:
    if ".env" in layers:
        write(tmp_path / ".env", "FRAUDCTL_MODEL_NAME=dotenv-model\nOTHER=1\n")
    if "toml" in layers:
        write(tmp_path / "fraudctl.toml", 'model_name = "toml-model"\n')
    environ = {"FRAUDCTL_MODEL_NAME": "env-model"} if "env" in layers else {}
    flags = {"model_name": "flag-model"} if "flag" in layers else {}
    loaded = load_settings(flags, environ=environ, cwd=tmp_path)
    assert loaded.settings.model_name == expected
    assert loaded.sources["model_name"] == source


def test_profile_from_dotenv_picks_defaults_and_file_overrides_one_key(tmp_path: Path) -> None:
    write(tmp_path / ".env", "FRAUDCTL_PROFILE=stack\n")
    write(tmp_path / "fraudctl.toml", '[fraudctl]\nkafka_bootstrap = "broker:9092"\n')
    loaded = load_settings(environ={}, cwd=tmp_path)
    assert loaded.settings.profile == "stack"
    assert loaded.sources["profile"] == ".env"
    assert loaded.settings.kafka_bootstrap == "broker:9092"
    assert loaded.settings.redis_url.startswith("redis://")


def test_empty_value_counts_as_unset(tmp_path: Path) -> None:
    loaded = load_settings(environ={"FRAUDCTL_RAY_ADDRESS": ""}, cwd=tmp_path)
    assert loaded.settings.ray_address is None
    assert loaded.sources["ray_address"] == "default"


def test_relative_home_resolves_against_cwd(tmp_path: Path) -> None:
    loaded = load_settings({"home": "state"}, environ={}, cwd=tmp_path)
    assert loaded.settings.home == tmp_path / "state"


@pytest.mark.parametrize(
    ("environ", "key", "fragment"),
    [
        ({"FRAUDCTL_PROFILE": "prod"}, "FRAUDCTL_PROFILE", "local, stack"),
        ({"FRAUDCTL_KAFKA_BOOTSTRAP": "nohost"}, "FRAUDCTL_KAFKA_BOOTSTRAP", "host:port"),
        ({"FRAUDCTL_TOPIC_PARTITIONS": "zero"}, "FRAUDCTL_TOPIC_PARTITIONS", "integer"),
        ({"FRAUDCTL_S3_BUCKET": "Bad_Bucket"}, "FRAUDCTL_S3_BUCKET", "lowercase"),
        ({"FRAUDCTL_REDIS_URL": "http://x"}, "FRAUDCTL_REDIS_URL", "redis://"),
        ({"FRAUDCTL_S3_SECRET_KEY": "changeme"}, "FRAUDCTL_S3_SECRET_KEY", "placeholder"),
    ],
)
def test_invalid_value_names_key_source_and_allowed(
    tmp_path: Path, environ: dict[str, str], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ, cwd=tmp_path)
    message = str(info.value)
    assert key in message
    assert "(from env)" in message
    assert fragment in message


def test_invalid_secret_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"FRAUDCTL_REDIS_PASSWORD": "password"}, cwd=tmp_path)
    assert "'password'" not in str(info.value)
    assert "****" in str(info.value)


def test_unknown_key_in_toml_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "fraudctl.toml", 'kafka_bootstrapp = "x:1"\n')
    with pytest.raises(ConfigError, match="unknown setting 'kafka_bootstrapp'"):
        load_settings(environ={}, cwd=tmp_path)


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("redis://:s3cr3t@host:6379/0") == "redis://:****@host:6379/0"
    assert mask_url("http://user:pw@mlflow:5000") == "http://user:****@mlflow:5000"
    assert mask_url("redis://host:6379/0") == "redis://host:6379/0"


def test_config_show_masks_secrets_and_reports_sources(cli: RunCli, isolated_env: Path) -> None:
    write(isolated_env / ".env", "FRAUDCTL_S3_SECRET_KEY=very-distinctive-secret-1\n")
    write(isolated_env / "fraudctl.toml", 'redis_url = "redis://:url-secret-2@h:1/0"\n')
    result = cli("--set", "model_name=m1", "config", "show", "--json")
    assert result.code == 0, result.err
    rows = {row["key"]: row for row in result.json()["settings"]}
    assert rows["s3_secret_key"] == {
        "key": "s3_secret_key",
        "env": "FRAUDCTL_S3_SECRET_KEY",
        "value": "****",
        "source": ".env",
    }
    assert rows["redis_url"]["value"] == "redis://:****@h:1/0"
    assert rows["redis_url"]["source"] == "fraudctl.toml"
    assert rows["model_name"]["source"] == "flag"
    text = cli("config", "show")
    assert "very-distinctive-secret-1" not in result.out + text.out + text.err
    assert "url-secret-2" not in result.out + text.out + text.err


def test_invalid_config_exits_2_with_cause(cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDCTL_PROFILE", "production")
    result = cli("config", "show")
    assert result.code == 2
    assert "FRAUDCTL_PROFILE='production' (from env)" in result.err
    assert "local, stack" in result.err


def test_config_init_writes_private_env_without_printing_secrets(
    cli: RunCli, isolated_env: Path
) -> None:
    write(isolated_env / ".env.example", "FRAUDCTL_S3_ACCESS_KEY=changeme\nFRAUDCTL_MODEL_NAME=x\n")
    result = cli("config", "init", "--json")
    assert result.code == 0, result.err
    env = (isolated_env / ".env").read_text()
    secret = env.splitlines()[0].split("=", 1)[1]
    assert len(secret) == 32
    assert secret not in result.out + result.err
    assert (isolated_env / ".env").stat().st_mode & 0o777 == 0o600
    assert cli("config", "init").code == 2  # refuses to overwrite


def test_config_init_outside_a_checkout_uses_the_installed_template(
    cli: RunCli, isolated_env: Path
) -> None:
    assert not (isolated_env / ".env.example").exists()
    result = cli("config", "init", "--json")
    assert result.code == 0, result.err
    env = (isolated_env / ".env").read_text()
    assert "FRAUDCTL_S3_SECRET_KEY=" in env and "FRAUDCTL_PROFILE" in env
    assert set(result.json()["generated"]) >= {"FRAUDCTL_S3_ACCESS_KEY", "FRAUDCTL_REDIS_PASSWORD"}
    missing = cli("config", "init", "--force", "--example", "nope.example")
    assert missing.code == 2 and "nope.example" in missing.err


def test_each_backend_is_a_typed_choice_with_its_own_parameters(tmp_path: Path) -> None:
    from fraudctl.config import (
        FileLockConfig,
        FileLogBusConfig,
        KafkaBusConfig,
        LocalOfflineConfig,
        RedisConfig,
        RedisLockConfig,
        S3OfflineConfig,
        SqliteConfig,
    )

    local = load_settings(environ={}, cwd=tmp_path).settings
    home = local.home
    chosen = local.backends()
    assert chosen.bus == FileLogBusConfig(path=home / "bus")
    assert chosen.offline_store == LocalOfflineConfig(path=home / "offline")
    assert chosen.online_store == SqliteConfig(path=home / "feast" / "online.db")
    assert chosen.dedupe_store == SqliteConfig(path=home / "state" / "dedupe.db")
    assert chosen.promote_lock == FileLockConfig(path=home / "promote.lock")
    assert chosen.registry.uri == local.mlflow_uri

    stack = load_settings({"profile": "stack"}, environ={"FRAUDCTL_S3_ACCESS_KEY": "ak-1234567"},
                          cwd=tmp_path).settings.backends()  # fmt: skip
    assert isinstance(stack.bus, KafkaBusConfig) and stack.bus.bootstrap.endswith("19092")
    assert isinstance(stack.offline_store, S3OfflineConfig)
    assert stack.offline_store.access_key is not None
    assert isinstance(stack.online_store, RedisConfig)
    assert isinstance(stack.dedupe_store, RedisConfig)
    assert isinstance(stack.promote_lock, RedisLockConfig)
    assert stack.promote_lock.key == "fraudctl:promote-lock:fraud-detector"


def test_an_unknown_backend_type_is_refused_by_its_discriminator() -> None:
    from pydantic import ValidationError

    from fraudctl.config import BackendsConfig

    with pytest.raises(ValidationError, match="'filelog', 'kafka'"):
        BackendsConfig.model_validate({"bus": {"type": "nats"}})


def test_toml_backend_tables_feast_style(tmp_path: Path) -> None:
    write(tmp_path / "fraudctl.toml", """
[bus]
type = "kafka"
bootstrap = "10.0.0.5:9092"

[online_store]
type = "redis"
url = "redis://10.0.0.6:6379/2"

[registry]
uri = "http://10.0.0.7:5000"
""")  # fmt: skip
    loaded = load_settings(environ={}, cwd=tmp_path)
    settings = loaded.settings
    assert (settings.bus, settings.kafka_bootstrap) == ("kafka", "10.0.0.5:9092")
    assert (settings.online_store, settings.redis_url) == ("redis", "redis://10.0.0.6:6379/2")
    assert settings.mlflow_uri == "http://10.0.0.7:5000"
    assert loaded.sources["kafka_bootstrap"] == "fraudctl.toml"
    assert settings.offline_store == "localfs"  # not in the file: the profile's default
    chosen = settings.backends()
    assert chosen.online_store.type == "redis" and chosen.bus.type == "kafka"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[queue]\ntype = "kafka"\n', r"\[queue\] is not a backend table"),
        ('[bus]\ntype = "kafka"\nbrokers = "h:1"\n', r"\[bus\] has no field 'brokers'"),
        ('[bus]\ntype = "nats"\n', "invalid FRAUDCTL_BUS='nats'"),
    ],
)
def test_a_wrong_backend_table_names_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "fraudctl.toml", text)
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={}, cwd=tmp_path)


def test_config_show_lists_the_backends_with_secrets_masked(
    cli: RunCli, isolated_env: Path
) -> None:
    hidden = ("pw-distinct-77", "s3-distinct-88")
    lines = ["FRAUDCTL_PROFILE=stack", f"FRAUDCTL_REDIS_PASSWORD={hidden[0]}",
             f"FRAUDCTL_S3_SECRET_KEY={hidden[1]}"]  # fmt: skip
    write(isolated_env / ".env", "\n".join(lines) + "\n")
    result = cli("config", "show", "--json")
    assert result.code == 0, result.err
    backends = result.json()["backends"]
    assert backends["bus"]["type"] == "kafka" and backends["online_store"]["password"] == "****"
    assert backends["offline_store"]["secret_key"] == "****"
    assert backends["offline_store"]["access_key"] is None
    text = cli("config", "show")
    assert "promote_lock" in text.out and "fraudctl:promote-lock:fraud-detector" in text.out
    for secret in hidden:
        assert secret not in result.out + text.out + text.err
