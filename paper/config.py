"""``PaperConfig``: every knob of the simulated exchange (fills, fees, funding, liquidation).

Frozen pydantic model, unknown keys refused; each field carries its bounds and a one-line
description so ``config/default.toml`` and ``--help`` can be generated from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LiquidationProfile = Literal["binance", "tiered", "bybit", "okx"]
TriggerPrice = Literal["mark", "last"]


class PaperConfig(BaseModel):
    """Settings of the paper exchange (``[paper]`` in the TOML config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    starting_balance: float = Field(
        default=10_000.0,
        gt=0,
        le=1e12,
        description="wallet balance at start, in the settle currency",
    )
    currency: str = Field(
        default="USDT",
        min_length=1,
        max_length=10,
        description="settle (margin) currency of the wallet",
    )
    slippage_bps: float = Field(
        default=2.0, ge=0, le=1_000, description="adverse slippage of market and stop fills, in bps"
    )
    participation_coef: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="extra slippage = coef x order amount / candle volume (0 = off)",
    )
    trigger_price: TriggerPrice = Field(
        default="mark", description="price that triggers stop / take-profit orders by default"
    )
    funding_rate: float = Field(
        default=0.0001,
        ge=-0.05,
        le=0.05,
        description="funding rate per 8 h used when no funding-rate series is loaded",
    )
    auto_funding: bool = Field(
        default=True, description="charge funding in on_price at 00:00, 08:00 and 16:00 UTC"
    )
    liquidation_profile: LiquidationProfile = Field(
        default="binance",
        description=(
            "default liquidation model: binance (MM incl. cum), tiered, or bybit / okx (each"
            " venue's model on its bundled markets)"
        ),
    )
    liquidation_profiles: dict[str, LiquidationProfile] = Field(
        default_factory=dict, description="per-symbol liquidation profile overrides"
    )
    liquidation_fee_rate: float = Field(
        default=0.005,
        ge=0,
        le=0.1,
        description="liquidation fee rate of the tiered profile (okx uses the taker fee rate)",
    )
    taker_fee: float | None = Field(
        default=None, ge=0, le=0.01, description="taker fee rate override (None = the market's)"
    )
    maker_fee: float | None = Field(
        default=None, ge=-0.01, le=0.01, description="maker fee rate override (None = the market's)"
    )
    default_leverage: float = Field(
        default=1.0, ge=1, le=125, description="leverage of a symbol until set_leverage is called"
    )
    default_margin_mode: Literal["isolated", "cross"] = Field(
        default="isolated", description="margin mode of a symbol until set_margin_mode is called"
    )
    cancel_reduce_only_on_flat: bool = Field(
        default=True, description="cancel resting reduce-only / close-position orders when flat"
    )

    def profile_for(self, symbol: str) -> LiquidationProfile:
        """The liquidation profile that applies to ``symbol``."""
        return self.liquidation_profiles.get(symbol, self.liquidation_profile)
