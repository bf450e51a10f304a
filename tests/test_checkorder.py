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


def check_json(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(
        app, ["check-order", "--symbol", "BTC/USDT:USDT", "--at", NOON, "--json", *args]
    )
    return result.exit_code, json.loads(result.output)


def test_the_headline_is_the_order_as_it_would_go_out(clean_env: Path) -> None:
    # Long 0.5 BTC at 60,000, 10x, stop 58,000 (2 bps slippage, taker 0.05 %): per BTC the loss
    # at the stop is (60,012 - 57,988.4) + 0.0005 * (60,012 + 57,988.4) = 2,082.6002, so 1 % of
    # 10,000 fits 100 / 2,082.6002 = 0.04802 → 0.048 BTC; position_cap caps 10x at 5x.
    # Out it goes as 0.048 BTC at 5x: notional 2,880, margin 576, liquidation where
    # 576 + 0.048 (P - 60,000) = 0.048 P * 0.004 → P = 2,304 / 0.047808 = 48,192.77,
    # bankruptcy 60,000 - 576 / 0.048 = 48,000.
    code, data = check_json(
        "--side", "long", "--amount", "0.5", "--price", "60000", "--leverage", "10",
        "--stop", "58000",
    )  # fmt: skip
    assert code == 0
    final = data["final"]
    assert isinstance(final, dict)
    assert final["amount"] == pytest.approx(0.048) and final["leverage"] == 5
    assert final["notional"] == pytest.approx(2_880.0) and final["margin"] == pytest.approx(576.0)
    assert final["liquidation_price"] == pytest.approx(2_304 / 0.047808, rel=1e-9)
    assert final["bankruptcy_price"] == pytest.approx(48_000.0)
    # each resize credited to its rule: the amount to stop_loss, the leverage to position_cap
    resizes = data["resizes"]
    assert isinstance(resizes, list)
    assert [(r["rule"], r["changes"]) for r in resizes] == [
        ("stop_loss", ["amount 0.5 BTC → 0.048 BTC"]),
        ("position_cap", ["leverage 10x → 5x"]),
    ]
    text = runner.invoke(
        app,
        ["check-order", "--symbol", "BTC/USDT:USDT", "--at", NOON, "--side", "long",
         "--amount", "0.5", "--price", "60000", "--leverage", "10", "--stop", "58000"],
    ).output  # fmt: skip
    headline = text.splitlines()[1]
    assert headline.startswith("order as it would go out: long 0.048 BTC on BTC/USDT:USDT")
    assert "liquidation price 48,192.77 USDT" in text.splitlines()[2]
    assert "e+" not in text and "e-0" not in text  # one number format, no exponents


def test_notional_and_margin_are_alternatives_to_amount(clean_env: Path) -> None:
    # 0.04 BTC at 60,000 = 2,400 USDT notional = 480 USDT margin at 5x
    base = ["--side", "long", "--price", "60000", "--leverage", "5", "--stop", "58000"]
    by_amount = check_json(*base, "--amount", "0.04")[1]
    by_notional = check_json(*base, "--notional", "2400")[1]
    by_margin = check_json(*base, "--margin", "480")[1]
    for data in (by_notional, by_margin):
        assert data["order"] == pytest.approx(by_amount["order"])
        assert data["decision"]["amount"] == pytest.approx(by_amount["decision"]["amount"])  # type: ignore[index]


def test_what_would_pass_when_liquidation_refuses(clean_env: Path) -> None:
    # 20x long at 60,000 (cap raised to 50x): margin 30 per 0.01 BTC, liquidation at
    # (600 - 30) / 0.00996 = 57,228.92, 4.62 % away (< 5 %): refused. Lower leverage L puts it
    # at 60,000 (1 - 1/L) / 0.996; the stop 55,000 must sit 1 % above it: at 11x 54,765.97 *
    # 1.01 = 55,313.6 (no), at 10x 54,216.87 * 1.01 = 54,759.04 (yes): 10x is the highest.
    cap = ["--set", "guards.position_cap.max_leverage=50"]
    code, data = check_json(
        "--side", "long", "--amount", "0.01", "--price", "60000", "--leverage", "20",
        "--stop", "55000", *cap,
    )  # fmt: skip
    assert code == 1 and data["decision"]["code"] == "liq_too_close"  # type: ignore[index]
    assert data["would_pass"]["highest leverage that clears liquidation"] == "10x"  # type: ignore[index]
    # at 10x a stop at 54,500 is under that limit: the farthest stop is 54,759.04 rounded up
    # to the 0.1 tick, 54,759.10
    code, data = check_json(
        "--side", "long", "--amount", "0.01", "--price", "60000", "--leverage", "10",
        "--stop", "54500", *cap,
    )  # fmt: skip
    assert code == 1 and data["decision"]["code"] == "stop_beyond_liquidation"  # type: ignore[index]
    assert data["would_pass"]["farthest stop that clears liquidation at 10x"] == "54,759.10 USDT"  # type: ignore[index]


def test_what_would_pass_says_when_entries_reopen(clean_env: Path) -> None:
    result = runner.invoke(
        app,
        ["check-order", "--symbol", "BTC/USDT:USDT", "--side", "long", "--amount", "0.01",
         "--price", "60000", "--stop", "58000", "--at", "2025-04-01T21:30:00", "--json"],
    )  # fmt: skip
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["decision"]["code"] == "session_closed"
    assert data["would_pass"]["entries reopen"] == "at 06:00 (UTC time)"


def test_leverage_above_the_markets_maximum_is_refused_at_input(clean_env: Path) -> None:
    result = runner.invoke(
        app,
        ["check-order", "--symbol", "BTC/USDT:USDT", "--side", "long", "--amount", "0.01",
         "--price", "60000", "--leverage", "126"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--leverage 126: BTC/USDT:USDT allows 1x to 125x" in result.output
