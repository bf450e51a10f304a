"""trend (off by default): no counter-trend entries, no catching falling knives.

Fed by ``GuardEngine.on_candle(symbol, open, high, low, close, ts)`` with closed candles of the
shell's timeframe (``ts`` = the candle's close time; a candle not newer than the last is ignored):

- an EMA of closes over ``ema_period`` candles, seeded with the simple mean of the first
  ``ema_period`` closes, then ``ema += (close − ema) × 2 / (ema_period + 1)``;
- the highest high of the candles that closed within the last ``window_min`` minutes.

Pre-trade: until the EMA is seeded entries are refused (``trend_warming_up``: fail closed); a
long with the mark below the EMA or a short with the mark above it is refused
(``trend_against_ema``); a long after the mark fell ``falling_knife_pct`` % or more below that
window high is refused (``falling_knife``). Sweep: none.
"""

from __future__ import annotations

from pydantic import Field

from guards.rules.base import Rule, RuleConfig, RuleEnv
from guards.state import SymbolState
from guards.types import GuardContext, OrderIntent, Verdict


class TrendConfig(RuleConfig):
    enabled: bool = Field(default=False, description="evaluate this rule")
    ema_period: int = Field(default=50, ge=2, le=1000, description="candles in the trend EMA")
    falling_knife_pct: float = Field(
        default=5.0,
        gt=0,
        le=100,
        description="refuse longs after a drop of this % from the window high",
    )
    window_min: float = Field(
        default=60.0,
        gt=0,
        le=10080,
        description="minutes of candles the falling-knife high looks back",
    )


class Trend(Rule[TrendConfig]):
    name = "trend"
    config_model = TrendConfig

    def __init__(self, config: TrendConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        self.period = config.ema_period
        self.window_s = config.window_min * 60.0

    def observe_candle(
        self, sub: SymbolState, open: float, high: float, low: float, close: float, ts: float
    ) -> None:
        """Fold one closed candle into the symbol's EMA and window high."""
        last = sub.last_candle_ts
        if last is not None and ts <= last:
            return
        sub.last_candle_ts = ts
        period = self.period
        count = sub.ema_count
        if count < period:
            count = sub.ema_count = count + 1
            sub.ema_seed_sum += close
            if count == period:
                sub.ema = sub.ema_seed_sum / period
        else:
            ema = sub.ema
            if ema is not None:
                sub.ema = ema + (close - ema) * 2.0 / (period + 1)
        highs = sub.highs
        horizon = ts - self.window_s
        while highs and highs[0][0] <= horizon:
            highs.popleft()
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((ts, high))

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        symbol = intent.symbol
        sub = self.state.symbols.get(symbol)
        ema = None if sub is None else sub.ema
        if sub is None or ema is None:
            seen = 0 if sub is None else sub.ema_count
            return self.reject(
                "trend_warming_up",
                f"trend EMA needs {cfg.ema_period} candles, has {seen}",
                {"candles": seen, "ema_period": cfg.ema_period},
            )
        mark = ctx.marks[symbol].price
        long = intent.side == "long"
        if (mark < ema) if long else (mark > ema):
            return self.reject(
                "trend_against_ema",
                f"{intent.side} with mark {mark:g} {'below' if long else 'above'} EMA {ema:g}",
                {"mark": mark, "ema": ema},
            )
        if long:
            horizon = ctx.now - self.window_s
            high = None
            for ts, value in sub.highs:  # monotonic: the first unexpired entry is the max
                if ts > horizon:
                    high = value
                    break
            if high is not None and high > 0.0:
                drop = (high - mark) / high * 100.0
                if drop >= cfg.falling_knife_pct:
                    return self.reject(
                        "falling_knife",
                        f"mark {drop:.2f}% below the {cfg.window_min:g}-min high {high:g}",
                        {"mark": mark, "window_high": high, "drop_pct": drop},
                    )
        return self.allow({"mark": mark, "ema": ema})
