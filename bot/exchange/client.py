"""Building a ccxt client for ``bot.exchange.live.LiveExchange`` and pointing it elsewhere.

``make_client`` builds the client of ``ExchangeSettings`` (``ccxt.pro`` when the exchange
streams and streams are wanted, else ``ccxt.async_support``; both imported only here, since
importing ccxt costs about a second and ~100 MB) with guardbot's defaults, the venue's ccxt
options (``bot.exchange.venue``) and the credentials. ``point_at`` sends its requests to
another server (the local emulator in tests and dress rehearsals): Binance's every ``fapi*``
and ``sapi`` base URL (and, since ccxt picks Binance's futures error table by URL prefix, that
table is merged into the general one), Bybit's five REST bases, OKX's ``rest`` base.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccxt.base.errors import NotSupported

from bot.exchange.venue import venue_for
from bot.settings import ExchangeSettings

#: Binance USDⓈ-M REST sections ccxt uses, and their paths below the base URL.
BINANCE_PATHS: dict[str, str] = {
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "sapi": "/sapi/v1",
}
#: Bybit v5 REST bases ccxt ``bybit`` signs and sends to (``urls['api']``).
BYBIT_APIS = ("spot", "futures", "v2", "public", "private")
#: Exchanges the live adapter has end-to-end tests for (against the local emulator).
TESTED_EXCHANGES = ("binanceusdm", "bybit", "okx")


def point_at(client: Any, api_url: str, ws_url: str | None = None) -> None:
    """Send a ccxt client's REST (and, Binance, stream) requests to ``api_url`` / ``ws_url``.

    Binance, Bybit (every REST base) and OKX (``rest``); the Bybit and OKX emulators serve no
    streams, so ``ws_url`` is Binance's only.
    """
    base = api_url.rstrip("/")
    exchange = str(client.id)
    if exchange in ("bybit", "okx"):
        if ws_url is not None:
            raise NotSupported(f"ws_url override is implemented for Binance only, not {exchange}")
        api = client.urls["api"]
        for key in BYBIT_APIS if exchange == "bybit" else ("rest",):
            api[key] = base
        return
    if not exchange.startswith("binance"):
        raise NotSupported(f"api_url override is not implemented for {exchange}")
    api = client.urls["api"]
    for key, path in BINANCE_PATHS.items():
        api[key] = base + path
    if ws_url is not None and isinstance(api.get("ws"), dict):
        api["ws"]["linear"] = ws_url
    # ccxt chooses the futures error table by URL prefix (fapi.binance.com); merge it in
    linear = client.exceptions.get("linear", {})
    client.exceptions.setdefault("exact", {}).update(linear.get("exact", {}))
    client.exceptions.setdefault("broad", {}).update(linear.get("broad", {}))


def make_client(
    settings: ExchangeSettings,
    *,
    streams: bool,
    timeout_ms: int,
    rate_limit: bool,
    options: Mapping[str, Any] | None,
) -> Any:
    """A ccxt client for ``settings`` (ccxt.pro when streaming and available)."""
    import ccxt.async_support as ccxt_async

    cls = None
    if streams:
        import ccxt.pro as ccxt_pro

        cls = getattr(ccxt_pro, settings.id, None)
    if cls is None:
        cls = getattr(ccxt_async, settings.id, None)
    if cls is None:
        raise NotSupported(f"ccxt has no exchange {settings.id!r}")
    opts: dict[str, Any] = {
        "fetchCurrencies": False,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    }
    if not str(settings.id).startswith("binance"):
        opts["defaultType"] = "swap"
    opts.update(venue_for(settings.id).client_options())
    if options:
        opts.update(options)
    config: dict[str, Any] = {
        "enableRateLimit": rate_limit,
        "timeout": timeout_ms,
        "options": opts,
    }
    if settings.api_key is not None:
        config["apiKey"] = settings.api_key.get_secret_value()
    if settings.api_secret is not None:
        config["secret"] = settings.api_secret.get_secret_value()
    if settings.password is not None:
        config["password"] = settings.password.get_secret_value()
    return cls(config)
