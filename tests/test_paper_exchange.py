"""PaperExchange: the async ccxt-shaped facade satisfies the bot's Exchange protocol."""

from __future__ import annotations

import json
from typing import Any

import ccxt
import pytest

from bot.exchange.protocol import Exchange
from paper.config import PaperConfig
from paper.exchange import PaperExchange
from paper.markets import bundled_tier_entries

BTC = "BTC/USDT:USDT"
T0 = 1_700_000_100_000


def make() -> PaperExchange:
    ex = PaperExchange(config=PaperConfig(slippage_bps=0))
    ex.core.on_price(BTC, 50_000, T0, mark=50_010)
    return ex


def test_satisfies_the_exchange_protocol() -> None:
    ex = make()
    assert isinstance(ex, Exchange)
    assert ex.id == "paper"


async def test_load_markets_is_ccxt_shaped() -> None:
    markets = await make().load_markets()
    btc = markets[BTC]
    assert btc["id"] == "BTCUSDT" and btc["type"] == "swap" and btc["linear"] is True
    assert (btc["base"], btc["quote"], btc["settle"]) == ("BTC", "USDT", "USDT")
    assert btc["contractSize"] == 1.0
    assert btc["precision"] == {"amount": 0.001, "price": 0.1}
    assert btc["limits"]["amount"]["min"] == 0.001
    assert btc["limits"]["cost"]["min"] == 100
    assert btc["limits"]["leverage"]["max"] == 125
    assert (btc["taker"], btc["maker"]) == (0.0005, 0.0002)
    # ccxt itself accepts these dicts and rounds with them like the paper exchange
    oracle = ccxt.binanceusdm()
    oracle.set_markets(list(markets.values()))
    assert oracle.amount_to_precision(BTC, 0.12345) == "0.123"
    assert oracle.price_to_precision(BTC, 50_000.06) == "50000.1"


async def test_ticker_has_last_and_mark() -> None:
    ticker = await make().fetch_ticker(BTC)
    assert ticker["last"] == 50_000 and ticker["markPrice"] == 50_010
    assert ticker["info"]["markPrice"] == 50_010
    assert ticker["timestamp"] == T0


async def test_order_lifecycle_through_the_facade() -> None:
    ex = make()
    await ex.set_margin_mode("isolated", BTC)
    await ex.set_leverage(5, BTC)
    entry = await ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "c1"})
    assert entry["status"] == "closed"
    stop = await ex.create_order(
        BTC, "market", "sell", 0.01, None, {"stopLossPrice": 48_000, "reduceOnly": True}
    )
    assert [o["id"] for o in await ex.fetch_open_orders(BTC)] == [stop["id"]]
    (pos,) = await ex.fetch_positions([BTC])
    assert pos["contracts"] == 0.01 and pos["leverage"] == 5 and pos["stopLossPrice"] == 48_000
    assert pos["markPrice"] == 50_010
    fetched = await ex.fetch_order("", BTC, {"clientOrderId": "c1"})
    assert fetched["id"] == entry["id"]
    canceled = await ex.cancel_order(stop["id"], BTC)
    assert canceled["status"] == "canceled"
    assert await ex.fetch_open_orders() == []
    balance = await ex.fetch_balance()
    # 10000 - fee 500 * 0.0005; free = that - isolated margin 100
    assert balance["USDT"]["total"] == pytest.approx(9_999.75)
    assert balance["free"]["USDT"] == pytest.approx(9_899.75)
    assert balance["used"]["USDT"] == pytest.approx(100)
    await ex.close()


async def test_errors_are_ccxt_classes() -> None:
    ex = make()
    with pytest.raises(ccxt.ArgumentsRequired):
        await ex.set_leverage(5)
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order(BTC, "market", "buy", 1)  # 50000 at 1x > 10000
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order("42", BTC)
    with pytest.raises(ccxt.NotSupported):
        await ex.create_order(BTC, "limit", "sell", 0.01, 49_000, {"stopLossPrice": 49_500})


async def test_leverage_tiers_are_the_bundled_binance_tiers() -> None:
    tiers = await make().fetch_leverage_tiers([BTC])
    assert tiers[BTC] == [dict(e) for e in bundled_tier_entries()[BTC]]
    assert tiers[BTC][0]["maxLeverage"] == 125 and tiers[BTC][0]["maintenanceMarginRate"] == 0.004


async def test_add_margin_moves_liquidation_price() -> None:
    ex = make()
    await ex.set_leverage(10, BTC)
    await ex.create_order(BTC, "market", "buy", 0.1)
    before = (await ex.fetch_positions())[0]["liquidationPrice"]
    result: dict[str, Any] = await ex.add_margin(BTC, 100)
    assert result["type"] == "add" and result["total"] == pytest.approx(600)
    after = (await ex.fetch_positions())[0]["liquidationPrice"]
    # 0.0996 P = 5000 - M: from M = 500 to M = 600 the price drops by 100 / 0.0996
    assert before - after == pytest.approx(100 / 0.0996)


def test_snapshot_of_the_facade_core_is_json() -> None:
    ex = make()
    text = json.dumps(ex.core.snapshot(), allow_nan=False)
    assert json.loads(text)["version"] == 2


def test_the_paper_core_raises_ccxt_classes_without_importing_every_exchange() -> None:
    """paper.ccxt_base loads ccxt's errors and precision helpers alone; a later ``import ccxt``
    reuses them, so ccxt's own clients raise the very classes the executor catches."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from paper.core import PaperCore\n"
        "from ccxt.base.errors import InvalidOrder\n"
        "assert 'ccxt' not in sys.modules, 'every exchange imported'\n"
        "import ccxt, ccxt.async_support\n"
        "assert ccxt.InvalidOrder is InvalidOrder\n"
        "assert ccxt.async_support.InvalidOrder is InvalidOrder\n"
        "assert ccxt.binanceusdm().id == 'binanceusdm'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
