"""The guardbot command line: help on every command, config errors exit 2 without a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

runner = CliRunner()
COMMANDS = [
    ["run"],
    ["replay"],
    ["check-order"],
    ["health"],
    ["version"],
    ["history"],
    ["halt"],
    ["resume"],
    ["reload"],
    ["preflight"],
    ["config"],
    ["config", "check"],
    ["config", "show"],
    ["config", "doc"],
]


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_every_command_has_help(cmd: list[str]) -> None:
    result = runner.invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_config_check_ok(clean_env: Path) -> None:
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "config ok" in result.output


def test_bad_config_exits_2_with_one_readable_message(clean_env: Path) -> None:
    cfg = clean_env / "bad.toml"
    cfg.write_text("[guards.position_cap]\nmax_leverage = -1\n", encoding="utf-8")
    # a real process, so we see exactly what a user sees (no traceback, status 2)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GUARDBOT_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bot.cli import main; main()",
            "config",
            "check",
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=clean_env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "guards.position_cap.max_leverage = -1" in proc.stderr
    assert str(cfg) in proc.stderr


def test_set_override_and_bad_set(clean_env: Path) -> None:
    ok = runner.invoke(
        app, ["config", "show", "--json", "--set", "guards.position_cap.max_leverage=2"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["guards"]["position_cap"]["max_leverage"] == 2
    bad = runner.invoke(app, ["config", "check", "--set", "nonsense"])
    assert bad.exit_code == 2
    assert "KEY=VALUE" in bad.output


def test_config_show_masks_secrets(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_SECRET", "hunter2-hunter2")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "hunter2-hunter2" not in result.output
    assert "**********" in result.output


def test_health_reads_the_heartbeat(clean_env: Path) -> None:
    from bot.state.heartbeat import write_heartbeat

    state = clean_env / "st"
    missing = runner.invoke(app, ["health", "--state-dir", str(state)])
    assert missing.exit_code == 1
    write_heartbeat(state, status="running")
    fresh = runner.invoke(app, ["health", "--state-dir", str(state), "--max-age", "60"])
    assert fresh.exit_code == 0, fresh.output
    write_heartbeat(state, status="stopped")
    stopped = runner.invoke(app, ["health", "--state-dir", str(state), "--max-age", "60"])
    assert stopped.exit_code == 1


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.startswith("guardbot ")


def test_short_help_and_version_flag() -> None:
    assert runner.invoke(app, ["-h"]).exit_code == 0
    short = runner.invoke(app, ["check-order", "-h"])
    assert short.exit_code == 0 and "--notional" in short.output and "--margin" in short.output
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("guardbot ")


def test_readable_metavars() -> None:
    text = runner.invoke(app, ["check-order", "--help"], terminal_width=200).output
    for metavar in ("BASE/QUOTE:SETTLE", "long|short", "QTY", "USDT", "ISO-TIME", "FILE"):
        assert metavar in text, metavar
    assert "<float>" not in text and "FLOAT" not in text


def test_live_with_a_paper_config_says_it_changes_nothing(clean_env: Path) -> None:
    data = clean_env / "BTC_USDT_USDT-5m-futures.csv"
    start = 1_743_465_600_000
    data.write_text(
        "\n".join(f"{start + i * 300_000},100,101,99,100,1" for i in range(30)) + "\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["run", "--live", "--json", "--set", f'feed.path="{data}"'])
    assert result.exit_code == 0, result.output
    assert '--live has no effect: the configuration says mode = "paper"' in result.output


def test_the_webhook_url_is_a_secret(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Masked by ``config show`` and in the settings dump a run record stores."""
    from bot.settings import load_settings

    monkeypatch.setenv("GUARDBOT_NOTIFY__WEBHOOK_URL", "https://hooks.example/T0KEN-abc123")
    shown = runner.invoke(app, ["config", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "T0KEN-abc123" not in shown.output
    assert json.loads(shown.output)["notify"]["webhook_url"] == "**********"
    settings = load_settings(secrets_dir=None)
    assert "T0KEN-abc123" not in json.dumps(settings.model_dump(mode="json"))  # the run record
    assert settings.notify.webhook_url is not None
    assert settings.notify.webhook_url.get_secret_value().endswith("T0KEN-abc123")
