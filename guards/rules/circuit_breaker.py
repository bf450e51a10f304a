"""circuit_breaker: stand aside during liquidation cascades and violent moves.

Fed by the engine: ``on_price(symbol, price, ts)`` and ``on_liquidations(symbol, notional, ts)``
(market-wide forced liquidations of that symbol, e.g. ccxt ``watch_liquidations``). The breaker
of a symbol opens for ``halt_min`` minutes (extended by each new trip) when

- a price moves ``move_pct`` % or more from the highest or lowest price seen in the last
  ``window_min`` minutes (up or down), or
- ``liq_notional`` > 0 and the liquidated notional in the last ``window_min`` minutes exceeds it.

Pre-trade: entries on a symbol with an open breaker are refused (``breaker_open``). While it is
open the liquidation sweep reduces at ``tighten_reduce_at_pct`` instead of
``liquidation.reduce_at_pct``. Sweep: none of its own.
"""

from __future__ import annotations

from pydantic import Field

from guards.rules.base import Rule, RuleConfig, RuleEnv
from guards.state import SymbolState
from guards.types import GuardContext, OrderIntent, Verdict


class CircuitBreakerConfig(RuleConfig):
    move_pct: float = Field(
        default=5.0,
        gt=0,
        le=100,
        description="price move within window_min that opens the breaker, %",
    )
    window_min: float = Field(
        default=15.0, gt=0, le=1440, description="minutes the move is measured over"
    )
    halt_min: float = Field(
        default=60.0, gt=0, le=10080, description="minutes the breaker stays open"
    )
    liq_notional: float = Field(
        default=0.0,
        ge=0,
        description="market liquidations in window_min that open the breaker (0 = off)",
    )
    tighten_reduce_at_pct: float = Field(
        default=6.0,
        gt=0,
        le=90,
        description="liquidation.reduce_at_pct used while the breaker is open",
    )


class CircuitBreaker(Rule[CircuitBreakerConfig]):
    name = "circuit_breaker"
    config_model = CircuitBreakerConfig

    def __init__(self, config: CircuitBreakerConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        self.window_s = config.window_min * 60.0
        self.halt_s = config.halt_min * 60.0

    def _trip(self, sub: SymbolState, ts: float, reason: str) -> None:
        until = ts + self.halt_s
        if until > sub.breaker_until:
            sub.breaker_until = until
        sub.breaker_reason = reason

    def observe_price(self, sub: SymbolState, price: float, ts: float) -> None:
        """Slide the price window and open the breaker on a large enough move."""
        horizon = ts - self.window_s
        hi, lo = sub.price_max, sub.price_min
        while hi and hi[0][0] <= horizon:
            hi.popleft()
        while lo and lo[0][0] <= horizon:
            lo.popleft()
        if hi and price > 0.0:
            cfg = self.config
            top = hi[0][1]
            bottom = lo[0][1]
            down = (top - price) / top * 100.0
            up = (price - bottom) / bottom * 100.0
            if down >= cfg.move_pct:
                self._trip(
                    sub, ts, f"price fell {down:.2f}% from {top:g} within {cfg.window_min:g} min"
                )
            elif up >= cfg.move_pct:
                self._trip(
                    sub, ts, f"price rose {up:.2f}% from {bottom:g} within {cfg.window_min:g} min"
                )
        while hi and hi[-1][1] <= price:
            hi.pop()
        hi.append((ts, price))
        while lo and lo[-1][1] >= price:
            lo.pop()
        lo.append((ts, price))

    def observe_liquidations(self, sub: SymbolState, notional: float, ts: float) -> None:
        """Add market-wide liquidated notional; open the breaker above ``liq_notional``."""
        cfg = self.config
        horizon = ts - self.window_s
        liqs = sub.liqs
        while liqs and liqs[0][0] <= horizon:
            sub.liq_sum -= liqs.popleft()[1]
        if not liqs:
            sub.liq_sum = 0.0  # drop accumulated float noise whenever the window empties
        liqs.append((ts, notional))
        sub.liq_sum += notional
        if cfg.liq_notional > 0.0 and sub.liq_sum > cfg.liq_notional:
            self._trip(
                sub,
                ts,
                f"{sub.liq_sum:,.0f} liquidated within {cfg.window_min:g} min "
                f"(threshold {cfg.liq_notional:,.0f})",
            )

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        sub = self.state.symbols.get(intent.symbol)
        if sub is None or sub.breaker_until <= ctx.now:
            return self.ok
        return self.reject(
            "breaker_open",
            f"circuit breaker open for {sub.breaker_until - ctx.now:.0f} s: {sub.breaker_reason}",
            {"until": sub.breaker_until, "reason": sub.breaker_reason},
        )
