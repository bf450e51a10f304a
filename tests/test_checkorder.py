"""`guardbot check-order`: liquidation figures checked by hand, verdicts and exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

runner = CliRunner()
NOON = "2025-04-01T12:00:00"  # inside the trading session of the default no_overnight window


def test_liquidation_and_bankruptcy_match_hand_arithmetic(clean_env: Path) -> None:
    # Long 0.5 BTC at 60,000, 10x isolated: notional 30,000 is in Binance BTCUSDT tier 1
    # (0-50,000: mmr 0.4 %, maintenance amount 0). Isolated margin = 30,000 / 10 = 3,000.
    # Liquidation: 3,000 + 0.5 (P - 60,000) = 0.5 P * 0.004  →  P = 27,000 / 0.498 = 54,216.867...
    # Bankruptcy: 3,000 + 0.5 (P - 60,000) = 0  →  P = 54,000.
    result = runner.invoke(
        app,
        [
            "check-order",
            "--symbol",
            "BTC/USDT:USDT",
            "--side",
            "long",
            "--amount",
            "0.5",
            "--price",
            "60000",
            "--leverage",
            "10",
            "--stop",
            "58000",
            "--at",
            NOON,
            "--json",
        ],
    )
    data = json.loads(result.output)
    assert data["order"]["margin"] == pytest.approx(3000.0)
    assert data["order"]["liquidation_price"] == pytest.approx(27_000 / 0.498, rel=1e-9)
    assert data["order"]["bankruptcy_price"] == pytest.approx(54_000.0)
    # 10x is above the 5x cap and 0.5 BTC risks 1,000 USDT at the stop (10 % of 10,000):
    # the guards resize rather than refuse, so the order is allowed smaller and at 5x.
    decision = data["decision"]
    assert result.exit_code == 0
    assert decision["outcome"] == "resize"
    assert decision["intent"]["leverage"] == 5
    # risk after resize: amount * 2,000 + fees ≤ 100 USDT (1 % of 10,000) → amount < 0.05
    assert decision["amount"] < 0.05
    rules = {v["rule"]: v for v in decision["verdicts"]}
    assert rules["stop_loss"]["code"] == "risk_too_high"
    assert rules["position_cap"]["code"] == "cap_leverage"


def test_refused_order_exits_1_and_names_the_code(clean_env: Path) -> None:
    result = runner.invoke(
        app,
        [
            "check-order",
            "--symbol",
            "BTC/USDT:USDT",
            "--side",
            "short",
            "--amount",
            "0.01",
            "--price",
            "60000",
            "--leverage",
            "3",
            "--at",
            NOON,
        ],
    )
    assert result.exit_code == 1
    assert "REFUSED (stop_missing)" in result.output


def test_stop_on_the_wrong_side_is_refused(clean_env: Path) -> None:
    result = runner.invoke(
        app,
        [
            "check-order",
            "--symbol",
            "BTC/USDT:USDT",
            "--side",
            "short",
            "--amount",
            "0.01",
            "--price",
            "60000",
            "--leverage",
            "3",
            "--stop",
            "59000",
            "--at",
            NOON,
            "--json",
        ],
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["decision"]["code"] == "stop_wrong_side"


def test_unknown_symbol_is_a_clear_error(clean_env: Path) -> None:
    result = runner.invoke(
        app,
        [
            "check-order",
            "--symbol",
            "DOGE/EUR:EUR",
            "--side",
            "long",
            "--amount",
            "1",
            "--price",
            "1",
            "--at",
            NOON,
        ],
    )
    assert result.exit_code == 2
    assert "no bundled market rules for DOGE/EUR:EUR" in result.output
