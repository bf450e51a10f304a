"""The paper exchange: a simulated perpetual-futures exchange (matching, margin ledger, funding,
the exchange's own liquidation engine) and the replay data feed. Depends on ``guards`` only.

ccxt's exception classes and precision helpers are loaded on their own first
(``paper.ccxt_base``), so a replay does not pay for importing every ccxt exchange.
"""

from paper.ccxt_base import preload

preload()
