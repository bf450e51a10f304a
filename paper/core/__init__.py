"""The paper exchange's synchronous engine: orders, matching, margin ledger, funding, liquidation.

``PaperCore`` (``paper.core.facade``) is the public face; the package is cut along its seams:

- ``records``: the history records (``Fill``, ``FundingPayment``, ``Trade``,
  ``LiquidationEvent``; ``CoreEvent`` is any of them), the internal order and position records,
  ``iso8601``;
- ``book``: one symbol's book (market, prices, open orders, position, crossing thresholds);
- ``matching``: order placement and validation, triggers on the price path, fills, slippage;
- ``ledger``: wallet, fees, funding, margins, cross figures, liquidation triggers;
- ``liquidation``: the exchange's own liquidation engine (whole and partial);
- ``history``: what happened, in order, with cursors for readers;
- ``views``: the ccxt-shaped order, position, balance and ticker dicts;
- ``snapshot``: the state as a JSON-safe dict, and back.
"""

from paper.core.facade import PaperCore
from paper.core.records import (
    FUNDING_PERIOD_MS,
    CoreEvent,
    Fill,
    FundingPayment,
    LiquidationEvent,
    Trade,
    iso8601,
)
from paper.core.snapshot import SNAPSHOT_VERSION

__all__ = [
    "FUNDING_PERIOD_MS",
    "SNAPSHOT_VERSION",
    "CoreEvent",
    "Fill",
    "FundingPayment",
    "LiquidationEvent",
    "PaperCore",
    "Trade",
    "iso8601",
]
