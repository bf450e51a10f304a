"""What every part of the Bybit emulator shares: signing, shapes, errors and account settings.

Bybit v5 signs a private request with ``X-BAPI-SIGN`` = hex HMAC-SHA256 of ``timestamp + api_key
+ recv_window + payload`` (the query string of a GET, the JSON body of a POST), with
``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP`` and ``X-BAPI-RECV-WINDOW`` headers; a request is
accepted when ``server_time - recv_window <= timestamp < server_time + 1000`` (10002 otherwise),
an unknown key is 10003, a bad signature 10004. Every answer is ``{"retCode", "retMsg",
"result", "retExtInfo", "time"}`` with HTTP 200, errors included (an injected 429 or 5xx keeps
its status).

Account settings the paper core does not model live here: the unified account's margin mode
(``REGULAR_MARGIN`` = cross, ``ISOLATED_MARGIN``; account-wide on Bybit's unified account) and
the position mode (one-way, or hedge: ``positionIdx`` 1/2, which the emulator refuses to trade
in: it holds one position per symbol, as guardbot does).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from aiohttp import web

from bot.emulator.binance.shapes import _s
from bot.emulator.server import ApiError, EmulatorServer
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket

RECV_WINDOW_DEFAULT_MS: Final = 5_000
FUTURE_TOLERANCE_MS: Final = 1_000
#: Bybit's order status of each paper-core status.
STATUS: Final[Mapping[str, str]] = {
    "open": "New",
    "closed": "Filled",
    "canceled": "Cancelled",
    "rejected": "Rejected",
    "expired": "Deactivated",
}


def num(x: float | int | None) -> str:
    """A number as Bybit writes it: a decimal string ("" for None)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return _s(x)


def flat(value: Any) -> str:
    """A JSON value as the text a query string would carry (for parameters and records)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


class BybitBase(EmulatorServer):
    """State shared by the Bybit emulator's parts."""

    rate_limit_error = (10006, "Too many visits. Exceeded the API Rate Limit.")

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        core: PaperCore | None = None,
        config: PaperConfig | None = None,
        symbols: Iterable[str] | None = None,
        balance: float | None = None,
        clock: Callable[[], float] | None = None,
        hedge_mode: bool = False,
        margin_mode: str = "REGULAR_MARGIN",
    ) -> None:
        extra = {} if clock is None else {"clock": clock}
        cfg = config if config is not None else PaperConfig(liquidation_profile="bybit")
        super().__init__(
            api_key=api_key,
            api_secret=api_secret,
            core=core,
            config=cfg,
            symbols=symbols,
            balance=balance,
            **extra,
        )
        self.hedge_mode = hedge_mode
        #: The unified account's margin mode (REGULAR_MARGIN: cross, ISOLATED_MARGIN).
        self.account_margin_mode = margin_mode
        self._by_id: dict[str, PaperMarket] = {}
        for s in self.core.symbols:
            m = self.core.market(s)
            self._by_id[m.id] = m
            self.core.set_margin_mode(self._core_mode(), s)
        #: Order ids by client id (orderLinkId), the client id of each order id.
        self._oid_by_link: dict[str, str] = {}
        self._link_by_oid: dict[str, str] = {}
        #: Per-order overlays (an order that expired after a partial fill).
        self._overlay: dict[str, dict[str, str]] = {}
        #: Trigger price basis of each conditional order (MarkPrice / LastPrice).
        self._trigger_by: dict[str, str] = {}
        self._direction: dict[str, int] = {}
        self._close_on_trigger: set[str] = set()

    def _core_mode(self) -> str:
        return "isolated" if self.account_margin_mode == "ISOLATED_MARGIN" else "cross"

    # ------------------------------------------------------------------ plumbing

    def _body_params(self, body: str, content_type: str) -> dict[str, str]:
        if not body:
            return {}
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError(10001, "params error: request body is not JSON") from None
        self.body_json = data
        if not isinstance(data, dict):
            raise ApiError(10001, "params error: request body must be an object")
        return {str(k): flat(v) for k, v in data.items()}

    def _error_payload(
        self, code: int | str, msg: str, status: int, error: ApiError | None = None
    ) -> tuple[Any, int]:
        body = {
            "retCode": int(code),
            "retMsg": msg,
            "result": {},
            "retExtInfo": {},
            "time": self.now_ms(),
        }
        return body, status if status in (404, 429) or status >= 500 else 200

    def ok(self, result: Any) -> dict[str, Any]:
        """A successful answer around ``result``."""
        return {
            "retCode": 0,
            "retMsg": "OK",
            "result": result,
            "retExtInfo": {},
            "time": self.now_ms(),
        }

    def _authenticate(
        self, request: web.Request, raw_query: str, body: str, params: Mapping[str, str]
    ) -> None:
        key = request.headers.get("X-BAPI-API-KEY")
        if not key or not hmac.compare_digest(key, self.api_key):
            raise ApiError(10003, "API key is invalid.")
        stamp = request.headers.get("X-BAPI-TIMESTAMP", "")
        if not stamp.isdigit():
            raise ApiError(10002, "invalid request, please check your timestamp and recv_window")
        window_text = request.headers.get("X-BAPI-RECV-WINDOW", str(RECV_WINDOW_DEFAULT_MS))
        if not window_text.isdigit():
            raise ApiError(10001, "params error: recv_window")
        signature = request.headers.get("X-BAPI-SIGN")
        if not signature:
            raise ApiError(10004, "error sign!")
        query = request.rel_url.raw_query_string  # as signed: still percent-encoded
        payload = stamp + key + window_text + (body if request.method == "POST" else query)
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(10004, f"error sign! origin_string[{payload}]")
        now = self.now_ms()
        ts = int(stamp)
        if not (now - int(window_text) <= ts < now + FUTURE_TOLERANCE_MS):
            raise ApiError(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window_text}]",
            )

    # ------------------------------------------------------------------ helpers

    def _linear(self, params: Mapping[str, str]) -> None:
        category = params.get("category")
        if category is None:
            raise ApiError(10001, "params error: category is empty")
        if category not in ("linear", "inverse", "spot", "option"):
            raise ApiError(10001, f"params error: category {category} invalid")

    def _market(self, params: Mapping[str, str], required: bool = True) -> PaperMarket | None:
        market_id = params.get("symbol")
        if not market_id:
            if required:
                raise ApiError(10001, "params error: symbol is empty")
            return None
        market = self._by_id.get(market_id)
        if market is None:
            raise ApiError(10001, f"params error: symbol invalid: {market_id}")
        return market

    def _register(self, oid: str, link: str) -> None:
        self._oid_by_link[link] = oid
        self._link_by_oid[oid] = link
