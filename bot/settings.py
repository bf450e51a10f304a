"""The bot's typed settings tree and where each value comes from.

Sources, highest precedence first: CLI flags (passed as overrides) > environment (``GUARDBOT_``
prefix, ``__`` between nested keys) > ``.env`` > the secrets directory (``/run/secrets`` in Docker)
> the TOML file given with ``--config`` > the bundled ``config/default.toml``.

``load_settings`` turns every failure (unknown key, wrong type, out-of-range value, unreadable,
binary or malformed file, a ``GUARDBOT_`` name that names no setting — ``bot.settings_env`` —, a
secret in a TOML file, an unknown ccxt exchange id, a symbol that is not a perpetual, a malformed
URL) into one ``ConfigError`` whose one-line message names the key, the value, the source and what
is expected. Secrets (``SECRET_KEYS``) are ``SecretStr``: masked in dumps, logs and run records.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bot.settings_env import (
    ENV_PREFIX,
    NESTED,
    NON_SETTINGS,
    ConfigError,
    check_environment,
    nearest,
    read_text,
    short,
    tree_names,
)
from guards import GuardsConfig
from paper.config import PaperConfig

__all__ = [
    "ENV_PREFIX",
    "NESTED",
    "NON_SETTINGS",
    "SECRET_KEYS",
    "ConfigError",
    "Settings",
    "check_environment",
    "default_config_text",
    "load_settings",
    "masked_dump",
    "read_text",
    "read_toml",
    "set_dotted",
]

DEFAULT_SECRETS_DIR = Path("/run/secrets")
_FROZEN = ConfigDict(frozen=True, extra="forbid")
#: Keys that hold secrets: masked everywhere, and never read from a TOML file.
SECRET_KEYS = (
    ("exchange", "api_key"),
    ("exchange", "api_secret"),
    ("exchange", "password"),
    ("notify", "webhook_url"),
    ("notify", "telegram_token"),
    ("status", "token"),
)
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$")


def _ccxt_exchange_ids() -> list[str] | None:
    """ccxt's exchange ids (its ``async_support`` modules), without importing ccxt; None when
    ccxt cannot be found."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "async_support"
    if not folder.is_dir():
        return None
    return sorted(
        f.stem for f in folder.glob("*.py") if not f.stem.startswith("_") and f.stem != "base"
    )


def _check_url(value: str | None, schemes: tuple[str, ...], example: str) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected a {'/'.join(schemes)} URL like {example}")
    return value


class ExchangeSettings(BaseModel):
    model_config = _FROZEN

    id: str = Field("binanceusdm", description="ccxt exchange id (live mode)")
    demo: bool = Field(
        False,
        description="demo trading (Binance: demo-fapi.binance.com, keys from demo.binance.com)",
    )
    sandbox: bool = Field(False, description="refused: the futures testnet is gone, use demo")
    api_key: SecretStr | None = Field(None, description="API key (env or Docker secret only)")
    api_secret: SecretStr | None = Field(None, description="API secret (env or Docker secret only)")
    password: SecretStr | None = Field(
        None, description="API passphrase, where the exchange has one"
    )
    symbols: tuple[str, ...] = Field(
        ("BTC/USDT:USDT",), min_length=1, description="perpetual markets the bot trades"
    )
    margin_mode: Literal["isolated", "cross"] = Field(
        "isolated", description="margin mode set per symbol before the first order"
    )
    leverage: float = Field(3.0, gt=0, le=125, description="leverage set per symbol (≤ guard cap)")
    api_url: str | None = Field(
        None, description="REST base URL override (the local emulator for dress rehearsals)"
    )
    ws_url: str | None = Field(None, description="websocket base URL override (emulator)")
    entry_deadline_s: float = Field(
        1.2, gt=0, le=60, description="seconds an entry POST may take before it is looked up"
    )
    lookup_deadline_s: float = Field(
        0.4, gt=0, le=60, description="seconds the look-up of an unanswered entry may take"
    )
    protect_deadline_s: float = Field(
        3.0, gt=0, le=60, description="seconds a stop, take-profit or exit POST may take"
    )
    read_deadline_s: float = Field(
        5.0, gt=0, le=120, description="seconds a read (positions, orders, balance) may take"
    )
    markets_refresh_s: float = Field(
        21_600.0, gt=0, le=604_800, description="seconds between market and leverage-tier refreshes"
    )

    @field_validator("id")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        ids = _ccxt_exchange_ids()
        if ids is not None and value not in ids:
            raise ValueError(f"not a ccxt exchange id{nearest(value, ids)}")
        return value

    @field_validator("sandbox")
    @classmethod
    def _no_sandbox(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "sandbox mode is not supported any more (Binance's futures testnet is gone and "
                "ccxt refuses it): set exchange.demo = true for demo trading instead"
            )
        return value

    @field_validator("symbols")
    @classmethod
    def _perpetual_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for symbol in value:
            if not _SYMBOL_RE.match(symbol):
                raise ValueError(
                    f"{symbol!r} is not a perpetual market: expected BASE/QUOTE:SETTLE, "
                    "e.g. BTC/USDT:USDT"
                )
        return value

    @field_validator("api_url")
    @classmethod
    def _rest_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("http", "https"), "https://fapi.binance.com")

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("ws", "wss", "http", "https"), "wss://fstream.binance.com")


class FeedSettings(BaseModel):
    model_config = _FROZEN

    kind: Literal["replay", "poll", "stream"] = Field(
        "replay", description="replay a candle file, or poll/stream live public market data"
    )
    path: Path | None = Field(
        None, description="candle file or folder for replay (empty: the bundled BTC/USDT 5m series)"
    )
    symbol: str | None = Field(None, description="symbol of the replay file (default: inferred)")
    paths: tuple[Path, ...] = Field(
        (), description="more candle files replayed with path, merged in time order"
    )
    funding_path: Path | None = Field(
        None, description="funding-rate series for replay (empty: bundled one with bundled data)"
    )
    mark_path: Path | None = Field(None, description="mark-price candles for replay (optional)")
    allow_gaps: bool = Field(False, description="accept gaps in replay data with a warning")
    timerange: str | None = Field(
        None, description="replay window YYYYMMDD-YYYYMMDD, either side open (freqtrade's format)"
    )
    markets_path: Path | None = Field(
        None, description="markets snapshot (ccxt load_markets shape) for symbols not bundled"
    )
    timeframe: str = Field("5m", description="candle timeframe for live feeds")
    poll_s: float = Field(5.0, gt=0, le=3600, description="seconds between polls (kind = poll)")

    @field_validator("timerange")
    @classmethod
    def _timerange_reads(cls, value: str | None) -> str | None:
        from paper.feed.timerange import parse_timerange

        parse_timerange(value)  # a TimerangeError is a ValueError: pydantic names the key
        return value


class StrategySettings(BaseModel):
    model_config = _FROZEN

    path: str = Field(
        "bot.strategies.sma_cross:SmaCross",
        min_length=1,
        description='strategy class as "package.module:Class", or "none" for seatbelt mode',
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments for the strategy class"
    )


class StateSettings(BaseModel):
    model_config = _FROZEN

    dir: Path = Field(Path("state"), description="folder for the SQLite store and heartbeat")
    heartbeat_s: float = Field(10.0, gt=0, le=3600, description="seconds between heartbeats")


class LoggingSettings(BaseModel):
    model_config = _FROZEN

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="lowest level logged"
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: coloured console on a terminal, JSON lines otherwise"
    )
    file: Path | None = Field(None, description="also append JSON lines to this file")


class MetricsSettings(BaseModel):
    model_config = _FROZEN

    enabled: bool = Field(False, description="serve Prometheus metrics")
    host: str = Field("127.0.0.1", description="metrics bind address")
    port: int = Field(9108, ge=1, le=65535, description="metrics port")
    token: SecretStr | None = Field(
        None, description="bearer token a scrape must send (none: open)"
    )


class NotifySettings(BaseModel):
    model_config = _FROZEN

    webhook_url: SecretStr | None = Field(
        None,
        description="generic webhook: every alert is POSTed here as JSON, retried (secret: "
        "its URL often carries a token)",
    )
    telegram_token: SecretStr | None = Field(None, description="Telegram bot token (secret)")
    telegram_chat_id: str | None = Field(None, description="Telegram chat id for alerts")
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="Telegram Bot API base URL"
    )
    refusal_digest_s: float = Field(
        300.0, ge=1, le=86_400, description="refused entries are sent as one digest per period"
    )
    timeout_s: float = Field(10.0, gt=0, le=120, description="HTTP timeout of one delivery")
    max_attempts: int = Field(5, ge=1, le=50, description="delivery attempts before giving up")
    queue_size: int = Field(
        1000, ge=10, le=100_000, description="alerts kept while deliveries are slow"
    )


class StatusSettings(BaseModel):
    model_config = _FROZEN

    enabled: bool = Field(False, description="serve the read-only status page and /health")
    host: str = Field("127.0.0.1", description="status page bind address")
    port: int = Field(8080, ge=1, le=65535, description="status page port")
    token: SecretStr | None = Field(
        None, description="bearer token required by the status page (none: open)"
    )


class HealthSettings(BaseModel):
    model_config = _FROZEN

    unreachable_s: float = Field(
        30.0, gt=0, le=3600, description="unhealthy when the exchange has not answered this long"
    )
    unprotected_s: float = Field(
        10.0, gt=0, le=3600, description="unhealthy when a position has had no stop this long"
    )


class ShutdownSettings(BaseModel):
    model_config = _FROZEN

    flatten: bool = Field(False, description="close all positions on SIGTERM/SIGINT")


class SeatbeltSettings(BaseModel):
    model_config = _FROZEN

    act_on_existing: bool = Field(
        False,
        description="seatbelt mode: cut positions found at start at once (else after "
        "`guardbot seatbelt apply`)",
    )


class Settings(BaseSettings):
    """The whole configuration of one bot process."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
    )

    mode: Literal["paper", "live"] = Field("paper", description="paper (simulated) or live trading")
    exchange: ExchangeSettings = Field(default_factory=lambda: ExchangeSettings())
    feed: FeedSettings = Field(default_factory=lambda: FeedSettings())
    strategy: StrategySettings = Field(default_factory=lambda: StrategySettings())
    guards: GuardsConfig = Field(default_factory=lambda: GuardsConfig())
    paper: PaperConfig = Field(default_factory=lambda: PaperConfig())
    state: StateSettings = Field(default_factory=lambda: StateSettings())
    logging: LoggingSettings = Field(default_factory=lambda: LoggingSettings())
    metrics: MetricsSettings = Field(default_factory=lambda: MetricsSettings())
    notify: NotifySettings = Field(default_factory=lambda: NotifySettings())
    status: StatusSettings = Field(default_factory=lambda: StatusSettings())
    shutdown: ShutdownSettings = Field(default_factory=lambda: ShutdownSettings())
    health: HealthSettings = Field(default_factory=lambda: HealthSettings())
    seatbelt: SeatbeltSettings = Field(default_factory=lambda: SeatbeltSettings())

    @model_validator(mode="after")
    def _live_needs_keys(self) -> Settings:
        if self.mode == "live" and (
            self.exchange.api_key is None or self.exchange.api_secret is None
        ):
            raise ValueError(
                "mode = live needs exchange.api_key and exchange.api_secret "
                "(GUARDBOT_EXCHANGE__API_KEY / _SECRET or Docker secrets)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layers = _LAYERS.get() or _NO_LAYERS
        sources: list[PydanticBaseSettingsSource] = [
            InitSettingsSource(settings_cls, init_kwargs=dict(layers.overrides)),
            EnvSettingsSource(settings_cls),
            DotEnvSettingsSource(settings_cls, env_file=layers.env_file),
        ]
        if layers.secrets_dir is not None and layers.secrets_dir.is_dir():
            sources.append(
                NestedSecretsSettingsSource(
                    file_secret_settings,
                    secrets_dir=layers.secrets_dir,
                    secrets_nested_delimiter=NESTED,
                    secrets_dir_missing="ok",
                    env_prefix=ENV_PREFIX,
                )
            )
        sources.extend(_DictSource(settings_cls, data) for _, data in layers.files)
        return tuple(sources)


class _DictSource(PydanticBaseSettingsSource):
    """A settings source over an already-parsed TOML document."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _Layers:
    """What one ``load_settings`` call feeds to the sources (kept in a context variable)."""

    def __init__(
        self,
        overrides: Mapping[str, Any],
        files: list[tuple[str, dict[str, Any]]],
        env_file: Path | None,
        secrets_dir: Path | None,
    ) -> None:
        self.overrides = overrides
        self.files = files
        self.env_file = env_file
        self.secrets_dir = secrets_dir


_NO_LAYERS = _Layers({}, [], Path(".env"), DEFAULT_SECRETS_DIR)
_LAYERS: ContextVar[_Layers | None] = ContextVar("_LAYERS", default=None)


def default_config_text() -> str:
    """The bundled ``config/default.toml``."""
    return resources.files("config").joinpath("default.toml").read_text(encoding="utf-8")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a ``ConfigError`` naming the file."""
    return _parse_toml(read_text(path, "config file", "a UTF-8 TOML file"), str(path))


def _parse_toml(text: str, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {name} is not valid TOML: {exc}") from None


def _no_secrets(data: Mapping[str, Any], name: str) -> None:
    """A TOML file must not hold a secret (they come from the environment or secret files)."""
    for section, key in SECRET_KEYS:
        table = data.get(section)
        if isinstance(table, Mapping) and key in table:
            env = f"{ENV_PREFIX}{section}{NESTED}{key}".upper()
            raise ConfigError(
                f"{section}.{key} is set in config file {name}: secrets are never read from a "
                f"TOML file; expected it in the environment ({env}), a .env file or a secrets "
                f"file ({DEFAULT_SECRETS_DIR / env.lower()})"
            )


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in a nested dict, creating the tables on the way."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a table")
        node = child
    node[parts[-1]] = value


def load_settings(
    config_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
    secrets_dir: Path | None = DEFAULT_SECRETS_DIR,
) -> Settings:
    """Build the effective settings from every source; raise ``ConfigError`` on any problem.

    ``overrides`` is a nested dict of values from the command line (highest precedence).
    ``env`` replaces ``os.environ`` for the duration of the call (tests).
    """
    files: list[tuple[str, dict[str, Any]]] = []
    if config_path is not None:
        data = read_toml(config_path)
        _no_secrets(data, str(config_path))
        files.append((str(config_path), data))
    files.append(("config/default.toml (bundled)", _parse_toml(default_config_text(), "default")))
    layers = _Layers(overrides or {}, files, env_file, secrets_dir)
    token = _LAYERS.set(layers)
    saved = None
    if env is not None:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
    try:
        check_environment(Settings, os.environ, env_file, secrets_dir)
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_explain(exc, layers, os.environ)) from None
    except SettingsError as exc:  # a source could not parse a value (checked above, mostly)
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        raise ConfigError(f"invalid configuration: {exc}{cause}") from None
    finally:
        _LAYERS.reset(token)
        if saved is not None:
            os.environ.clear()
            os.environ.update(saved)


def _lookup(tree: Mapping[str, Any], loc: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = tree
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _origin(loc: tuple[str, ...], layers: _Layers, environ: Mapping[str, str]) -> str:
    """Name the highest-precedence source that set the key at ``loc``."""
    if _lookup(layers.overrides, loc)[0]:
        return "the command line"
    for depth in range(len(loc), 0, -1):
        name = (ENV_PREFIX + NESTED.join(loc[:depth])).upper()
        for key in environ:
            if key.upper() == name:
                return f"environment variable {key}"
    if layers.env_file is not None and layers.env_file.is_file():
        name = (ENV_PREFIX + NESTED.join(loc)).upper()
        text = layers.env_file.read_text(encoding="utf-8", errors="replace").upper()
        if name in text:
            return f"env file {layers.env_file}"
    if layers.secrets_dir is not None and layers.secrets_dir.is_dir():
        name = (ENV_PREFIX + NESTED.join(loc)).lower()
        for entry in layers.secrets_dir.iterdir():
            if entry.name.lower() in {name, loc[0].lower()}:
                return f"secrets file {entry}"
    for name, data in layers.files:
        if _lookup(data, loc)[0]:
            return name
    return "defaults"


def _explain(exc: ValidationError, layers: _Layers, environ: Mapping[str, str]) -> str:
    """One line: every problem with its key, value, source and what is expected."""
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc) or "(top level)"
        origin = _origin(loc, layers, environ)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            names = tree_names(Settings, loc[:-1], ".")
            msg = f"unknown key{nearest(key, names)}"
        value = err.get("input")
        secret = loc[:2] in SECRET_KEYS or any(
            s in key for s in ("key", "secret", "password", "token")
        )
        shown = "***" if secret else short(repr(value))
        if err["type"] == "extra_forbidden" or not isinstance(value, dict):
            lines.append(f"{key} = {shown} (from {origin}): {msg}")
        else:
            lines.append(f"{key} (from {origin}): {msg}")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return f"{len(lines)} configuration errors: " + "; ".join(lines)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets shown as ``**********``."""
    return settings.model_dump(mode="json")
