"""The one settings object: config.toml, then DPGATE_* environment variables. Unknown keys are refused."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


class DemoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    transactions_rows: int = Field(default=1_000_000, ge=1_000, le=100_000_000)


class PostgresSettings(BaseModel):
    """A PostgreSQL server holding datasets of `"engine": "postgres"` (their sources are its tables or views)."""

    model_config = ConfigDict(extra="forbid")

    url: str = "postgresql://postgres@127.0.0.1:5432/test"  # DPGATE_ENGINES__POSTGRES__URL
    schema_: str = Field(default="dpgate", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")  # the gateway's own schema
    reader_role: str = Field(default="dpgate_reader", pattern=r"^[a-z_][a-z0-9_]{0,62}$")  # queries run as this read-only role
    connect_timeout_s: float = Field(default=5.0, gt=0, le=600)
    pool_size: int = Field(default=4, ge=1, le=64)


class SparkSettings(BaseModel):
    """A Spark session for datasets of `"engine": "spark"` (Parquet paths or catalog tables)."""

    model_config = ConfigDict(extra="forbid")

    master: str = "local[2]"  # DPGATE_ENGINES__SPARK__MASTER: any Spark master URL for a real cluster
    warehouse: Path | None = None  # where bounded forms are written as Parquet; default <data_dir>/spark
    driver_memory: str = "2g"
    shuffle_partitions: int = Field(default=8, ge=1, le=100_000)


class EnginesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    postgres: PostgresSettings = PostgresSettings()
    spark: SparkSettings = SparkSettings()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DPGATE_", extra="forbid", env_nested_delimiter="__")

    data_dir: Path = Path("data")
    engine: Literal["duckdb", "postgres", "spark"] = "duckdb"  # the default engine of a dataset that names none
    engines: EnginesSettings = EnginesSettings()
    engine_threads: int | None = None
    demo: DemoSettings = DemoSettings()
    datasets: list[dict[str, Any]] = []
    ledger_url: str | None = None  # default: a SQLite file in the data directory
    admin_key: SecretStr | None = None  # DPGATE_ADMIN_KEY bootstraps the first administrator
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    threads: int = Field(default=8, ge=1, le=256)
    # `dpgate serve --workers N`: N pre-forked processes (gunicorn), `threads` each; more than one needs
    # a PostgreSQL ledger_url. Replicas pick up datasets another one registered within this interval.
    workers: int = Field(default=1, ge=1, le=64)
    replica_refresh_ms: int = Field(default=250, ge=0, le=600_000)
    log_level: str = "info"
    # FOR TESTS ONLY (DPGATE_FAULT): kill -9 this process at the named step of a query, to prove that
    # a crash anywhere never releases an uncharged answer (gateway/faults.py, tests/reliability).
    fault: Literal["after_engine", "after_noise", "after_charge", "during_response"] | None = None
    # Request limits (see config.toml). A refused or limited request is charged nothing.
    rate_limit_per_analyst: str = "600/minute"  # per API key; unauthenticated requests: per address
    rate_limit_per_organisation: str = "3000/minute"  # all analysts of one organisation together
    rate_limit_storage: str = "memory://"  # or redis://host:6379 (needs the `redis` package)
    max_request_bytes: int = Field(default=1_000_000, ge=1_024, le=1_000_000_000)
    query_timeout_s: float = Field(default=30.0, gt=0, le=86_400)
    max_active_jobs_per_analyst: int = Field(default=2, ge=1, le=1_000)
    job_queue: str = Field(default="", pattern=r"^$|^(rediss?|unix)://")  # "": training in-process; redis://…: on `dpgate worker`s
    # Public cap on the candidate groups of threshold partition selection: sizes its constant-time padding
    # (mechanisms.threshold.configure); more groups than this still release (DP), but may overrun it.
    threshold_max_groups: int = Field(default=10_000, ge=1, le=10_000_000)
    # Also serve the Prometheus metrics, without a key, on this "host:port" (e.g. "127.0.0.1:9108"; empty:
    # not). The main app's /metrics is for administrators either way (gateway/http/metrics.py).
    metrics_listen: str = ""

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str) -> str:
        if value.strip():
            parse_listen(value)  # ValueError names the setting
        return value.strip()

    @field_validator("rate_limit_per_analyst", "rate_limit_per_organisation")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        """A limits string ("60/minute", "10/second;1000/hour"), checked at start, not per request;
        an empty string means no limit."""
        from limits import parse_many

        if value.strip():
            parse_many(value)  # ValueError names the string
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_config_path()))

    @property
    def engine_path(self) -> Path:
        return self.data_dir / "engine.duckdb"

    @property
    def ledger(self) -> str:
        return self.ledger_url or f"sqlite:///{(self.data_dir / 'ledger.db').resolve()}"

    def secret_seed(self) -> str:
        """The key of the bounding hash: random once per data directory, kept beside the engine file."""
        path = self.data_dir / "bounding.key"
        if not path.exists():  # created whole or not at all: processes starting together keep one key
            self.data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".bounding.key.{os.getpid()}.{secrets.token_hex(4)}")
            try:
                tmp.write_text(secrets.token_hex(32))
                tmp.chmod(0o600)
                os.link(tmp, path)  # fails if another process made it first: then its key is the key
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        return path.read_text().strip()


_CONFIG_OVERRIDE: list[Path] = []


def _config_path() -> Path:
    return _CONFIG_OVERRIDE[-1] if _CONFIG_OVERRIDE else DEFAULT_CONFIG


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `config` (default: the repository's config.toml), environment, then `overrides`."""
    _CONFIG_OVERRIDE.append(config or DEFAULT_CONFIG)
    try:
        return Settings(**overrides)
    finally:
        _CONFIG_OVERRIDE.pop()


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9108` for IPv6) -> (host, port); raises ValueError naming the setting."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics_listen must be host:port (e.g. 127.0.0.1:9108), not {value!r}")
    return host, int(port)
