"""Settings: source precedence, secrets, and readable errors for bad configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_paper_replay_with_guards_on(clean_env: Path) -> None:
    s = load_settings(secrets_dir=None)
    assert s.mode == "paper"
    assert s.feed.kind == "replay"
    assert s.guards.position_cap.enabled
    assert s.guards.stop_loss.enabled
    assert not s.guards.trend.enabled


def test_precedence_cli_over_env_over_dotenv_over_secrets_over_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(
        clean_env / "c.toml", "[guards.position_cap]\nmax_leverage = 2\nmax_positions = 2\n"
    )
    secrets = clean_env / "secrets"
    secrets.mkdir()
    write(secrets / "guardbot_guards__position_cap__max_positions", "3")
    write(secrets / "guardbot_exchange__api_key", "k3y-from-secret")
    dotenv = write(clean_env / ".env", "GUARDBOT_GUARDS__OVERTRADING__MAX_ENTRIES_PER_HOUR=7\n")
    # file only
    s = load_settings(cfg, env_file=None, secrets_dir=None)
    assert s.guards.position_cap.max_leverage == 2
    # secrets over file
    s = load_settings(cfg, env_file=None, secrets_dir=secrets)
    assert s.guards.position_cap.max_positions == 3
    assert s.exchange.api_key is not None
    assert s.exchange.api_key.get_secret_value() == "k3y-from-secret"
    # .env over secrets/file, env over .env, cli over env
    monkeypatch.setenv("GUARDBOT_GUARDS__POSITION_CAP__MAX_LEVERAGE", "4")
    s = load_settings(cfg, env_file=dotenv, secrets_dir=secrets)
    assert s.guards.overtrading.max_entries_per_hour == 7
    assert s.guards.position_cap.max_leverage == 4
    s = load_settings(
        cfg,
        {"guards": {"position_cap": {"max_leverage": 1.5}}},
        env_file=dotenv,
        secrets_dir=secrets,
    )
    assert s.guards.position_cap.max_leverage == 1.5
    # untouched keys keep their defaults (deep merge, not replacement of whole tables)
    assert s.guards.position_cap.max_total_margin_pct == 50


def test_out_of_range_from_env_names_key_value_and_source(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDBOT_GUARDS__POSITION_CAP__MAX_LEVERAGE", "500")
    with pytest.raises(ConfigError) as info:
        load_settings(secrets_dir=None)
    msg = str(info.value)
    assert "guards.position_cap.max_leverage" in msg
    assert "500" in msg
    assert "GUARDBOT_GUARDS__POSITION_CAP__MAX_LEVERAGE" in msg


def test_unknown_key_in_file_names_the_file(clean_env: Path) -> None:
    cfg = write(clean_env / "bad.toml", "[guards.position_cap]\nmax_levrage = 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, secrets_dir=None)
    msg = str(info.value)
    assert "guards.position_cap.max_levrage" in msg
    assert "unknown key" in msg
    assert str(cfg) in msg


def test_wrong_type_names_key_and_file(clean_env: Path) -> None:
    cfg = write(clean_env / "t.toml", '[guards.overtrading]\nmax_entries_per_hour = "lots"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, secrets_dir=None)
    msg = str(info.value)
    assert "guards.overtrading.max_entries_per_hour" in msg
    assert "'lots'" in msg
    assert str(cfg) in msg


def test_unreadable_and_malformed_files(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.toml"):
        load_settings(clean_env / "missing.toml", secrets_dir=None)
    bad = write(clean_env / "broken.toml", "[guards\nx = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML.*line 1"):
        load_settings(bad, secrets_dir=None)


def test_bad_timezone_is_refused(clean_env: Path) -> None:
    cfg = write(clean_env / "tz.toml", '[guards.no_overnight]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"guards\.no_overnight\.timezone"):
        load_settings(cfg, secrets_dir=None)


def test_live_without_keys_is_refused(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match="api_key"):
        load_settings(None, {"mode": "live"}, secrets_dir=None)


def test_secret_values_never_appear_in_errors(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_KEY", "sup3r-s3cret-value")
    monkeypatch.setenv("GUARDBOT_EXCHANGE__LEVERAGE", "0")
    with pytest.raises(ConfigError) as info:
        load_settings(secrets_dir=None)
    assert "sup3r-s3cret-value" not in str(info.value)
