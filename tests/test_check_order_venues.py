"""``guardbot check-order --exchange``: the venue's bundled rules and liquidation model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bot.cli import app

AT = ["--at", "2025-04-01T12:00", "--json"]


def check(*args: str) -> tuple[int, dict[str, object] | str]:
    result = CliRunner().invoke(app, ["check-order", *args, *AT])
    try:
        return result.exit_code, json.loads(result.output)
    except ValueError:
        return result.exit_code, result.output


def test_bybit_rules_and_liquidation() -> None:
    order = ["--symbol", "BTC/USDT:USDT", "--side", "long", "--price", "60000", "--amount", "0.5"]
    order += ["--leverage", "20", "--stop", "58800"]
    code, bybit = check(*order, "--exchange", "bybit")
    assert code == 0 and isinstance(bybit, dict)
    asked = bybit["order"]
    assert isinstance(asked, dict)
    # Bybit's isolated long: LP = entry - (IM - MM) / size, MM 0.5 % of the entry value
    assert asked["liquidation_price"] == pytest.approx(60_000 - (1_500 - 30_000 * 0.005) / 0.5)
    _, binance = check(*order, "--exchange", "binanceusdm")
    assert isinstance(binance, dict) and isinstance(binance["order"], dict)
    assert binance["order"]["liquidation_price"] != asked["liquidation_price"]


def test_okx_rules_and_an_unbundled_symbol() -> None:
    order = ["--symbol", "ETH/USDT:USDT", "--side", "short", "--price", "2000", "--amount", "2"]
    code, okx = check(*order, "--leverage", "20", "--stop", "2040", "--exchange", "okx")
    assert code == 0 and isinstance(okx, dict) and isinstance(okx["order"], dict)
    # OKX's isolated short: (E + M/q) / (1 + mmr + taker fee), mmr 0.4 % (tier 1)
    e, m, q = 2_000.0, 200.0, 2.0
    assert okx["order"]["liquidation_price"] == pytest.approx(
        (e + m / q) / (1 + 0.004 + 0.0005), rel=1e-6
    )
    code, text = check("--symbol", "BTC/USDT:USDT", "--side", "long", "--price", "60000",
                       "--amount", "0.1", "--exchange", "okx")  # fmt: skip
    assert code == 2 and "no bundled market rules of okx" in str(text)
