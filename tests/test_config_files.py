"""Every shipped config file validates (a typo in an example would greet a user with exit 2)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["default.toml", "paper.toml"])
def test_config_file_validates(name: str, clean_env: Path) -> None:
    s = load_settings(REPO / "config" / name, env_file=None, secrets_dir=None)
    assert s.mode == "paper"


def test_live_example_validates_with_keys_and_is_safe(clean_env: Path) -> None:
    keys = {"exchange": {"api_key": "k" * 16, "api_secret": "s" * 16}}
    s = load_settings(REPO / "config" / "live.example.toml", keys, env_file=None, secrets_dir=None)
    assert s.mode == "live"
    assert s.exchange.demo is True  # the example starts on demo trading
    assert s.exchange.leverage <= s.guards.position_cap.max_leverage
    data = tomllib.loads((REPO / "config" / "live.example.toml").read_text(encoding="utf-8"))
    assert not {"api_key", "api_secret", "password"} & set(data["exchange"])  # keys: env/secrets
