"""A local exchange speaking the subset of Binance USDⓈ-M futures that the live adapter uses.

``Emulator`` is an aiohttp server on 127.0.0.1 backed by ``PaperCore`` (matching, margin ledger,
stops and the liquidation engine), so a real ccxt ``binanceusdm`` client pointed at it (API URLs
overridden) trades exactly as paper mode does. Run it by hand for dress rehearsals with
``python -m bot.emulator`` (see ``main``).

REST (``/fapi/v1``, ``/fapi/v2``, ``/fapi/v3``, ``/sapi/v1``): ping, time, exchangeInfo,
ticker/24hr, ticker/price, premiumIndex, leverageBracket, order POST/GET/DELETE, openOrders,
allOpenOrders DELETE, algoOrder POST/GET/DELETE (conditional stop / take-profit orders, which
Binance only accepts there), openAlgoOrders, algoOpenOrders DELETE, v3 positionRisk, v3/v2
account, v2 balance, leverage, marginType, positionSide/dual, listenKey and
``/sapi/v1/account/apiRestrictions``. Signed endpoints check the ``X-MBX-APIKEY`` header (-2015),
the HMAC-SHA256 signature over query string + body (-1022) and ``timestamp`` against
``recvWindow`` (-1021), like the real one. Client order ids must be unique among *open* orders
(-4116), as on Binance, so a blind re-send after a timeout really would double a position.

Market streams (``/ws``, ``/market/ws/<n>``, ...): ``SUBSCRIBE`` to ``<id>@markPrice[@1s]``,
``!markPrice@arr[@1s]``, ``<id>@forceOrder`` or ``!forceOrder@arr``; ``set_price`` pushes
``markPriceUpdate`` events, and every liquidation (the core's own, or ``emit_liquidation`` for
other traders' ones) pushes a ``forceOrder`` event.

Test hooks: ``set_price``, ``inject(Fault(...))`` (timeouts after the order was accepted,
dropped connections, 429 with Retry-After, 5xx, rejections, partial fills, an order that shows
as open then filled), ``open_external_position`` (a trade placed outside the bot) and
``emit_liquidation``. The same hooks are served without authentication under ``/_control/``
for the command-line mode (the server binds to 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from ccxt.base.errors import (
    BadRequest,
    BadSymbol,
    BaseError,
    DuplicateOrderId,
    InsufficientFunds,
    InvalidOrder,
    NotSupported,
    OperationRejected,
    OrderImmediatelyFillable,
    OrderNotFound,
)

from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket, load_markets

FaultKind = Literal[
    "timeout",
    "disconnect",
    "rate_limit",
    "server_error",
    "reject",
    "partial_fill",
    "open_then_filled",
]

RECV_WINDOW_DEFAULT_MS: Final = 5_000
RECV_WINDOW_MAX_MS: Final = 60_000
#: Binance refuses requests stamped more than this far in the future.
FUTURE_TOLERANCE_MS: Final = 1_000
CLIENT_ID_RE: Final = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_SIGNATURE_RE: Final = re.compile(r"(^|&)signature=[^&]*")
_ALGO_TYPES: Final = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
_PENDING_BASE: Final = 900_000_000
_EPS: Final = 1e-9


class ApiError(Exception):
    """A Binance-style error response: HTTP status plus ``{"code": ..., "msg": ...}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


@dataclass
class Fault:
    """One injected fault, matched on method + path (+ request params), used ``times`` times.

    Kinds:
      ``timeout``          process the request, then hold the response for ``delay_s`` (the
                           client times out; the order *was* accepted)
      ``disconnect``       process the request, then drop the connection without a response
      ``rate_limit``       HTTP 429, ``Retry-After: retry_after_s``, code -1003 (not processed)
      ``server_error``     HTTP ``status`` (503) with ``code``/``msg``; processed first when
                           ``after_accept`` (Binance's "execution status unknown" case)
      ``reject``           HTTP 400 with ``code``/``msg`` (not processed), e.g. a rejected stop
      ``partial_fill``     a MARKET order fills only ``fill_ratio`` of its quantity (rest expires)
      ``open_then_filled`` a MARKET order is acknowledged as NEW and fills only after ``polls``
                           queries of it
    """

    kind: FaultKind
    path: str = "/fapi/v1/order"
    method: str = "POST"
    times: int = 1
    #: Only requests whose parameters contain these values match (e.g. {"type": "STOP_MARKET"}).
    when: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 30.0
    retry_after_s: int = 1
    status: int = 503
    code: int = -1001
    msg: str = "Internal error; unable to process your request. Please try again."
    after_accept: bool = False
    fill_ratio: float = 0.5
    polls: int = 2
    #: How many requests matched this fault so far (read by tests).
    hits: int = 0

    def matches(self, method: str, path: str, params: Mapping[str, str]) -> bool:
        if self.times <= 0 or method != self.method or path != self.path:
            return False
        return all(params.get(k) == v for k, v in self.when.items())


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the emulator received (signature and key removed)."""

    method: str
    path: str
    params: Mapping[str, str]
    status: int


@dataclass
class _Pending:
    """A MARKET order acknowledged as NEW that fills after a number of queries."""

    ext_id: str
    client_id: str
    symbol: str
    side: str
    qty: float
    params: dict[str, Any]
    polls: int
    time_ms: int


def _s(x: float | int | None) -> str:
    """A number as Binance writes it: a plain decimal string ("0" for None)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "0"
    text = format(Decimal(repr(float(x))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _decimals(step: float) -> int:
    text = _s(step)
    return len(text.split(".")[1]) if "." in text else 0


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


def _missing(name: str) -> str:
    return f"Mandatory parameter '{name}' was not sent, was empty/null."


def _on_grid(value: float, step: float) -> bool:
    n = value / step
    return abs(n - round(n)) < 1e-6


class Emulator:
    """Binance USDⓈ-M futures over a ``PaperCore``; see the module docstring."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        core: PaperCore | None = None,
        config: PaperConfig | None = None,
        symbols: Iterable[str] | None = None,
        balance: float | None = None,
        clock: Callable[[], float] = time.time,
        permissions: Mapping[str, Any] | None = None,
        hedge_mode: bool = False,
    ) -> None:
        if core is None:
            cfg = config if config is not None else PaperConfig()
            core = PaperCore(cfg, load_markets(symbols, config=cfg), balance)
        self.core = core
        self.api_key = api_key
        self._secret = api_secret.encode()
        self.clock = clock
        #: Milliseconds added to the server clock (time-drift tests).
        self.clock_skew_ms = 0
        self.hedge_mode = hedge_mode
        self.permissions: dict[str, Any] = {
            "ipRestrict": False,
            "createTime": 1_700_000_000_000,
            "enableReading": True,
            "enableFutures": True,
            "enableWithdrawals": False,
            "enableInternalTransfer": False,
            "permitsUniversalTransfer": False,
            "enableMargin": False,
            "enableSpotAndMarginTrading": False,
            "enableVanillaOptions": False,
            "enablePortfolioMarginTrading": False,
            "enableFixApiTrade": False,
            "enableFixReadOnly": False,
        }
        if permissions:
            self.permissions.update(permissions)
        self.faults: list[Fault] = []
        #: The latest requests received (signature removed), for tests and the control API.
        self.requests: deque[RequestRecord] = deque(maxlen=100_000)
        self.market_liquidations: list[dict[str, Any]] = []
        self._by_id: dict[str, PaperMarket] = {}
        for s in core.symbols:
            m = core.market(s)
            self._by_id[m.id] = m
        # client ids: Binance wants them unique among open orders only, so the emulator keeps
        # its own registry (the core never sees them)
        self._cid_by_oid: dict[str, str] = {}
        self._oids_by_cid: dict[str, list[str]] = {}
        self._overlay: dict[str, dict[str, str]] = {}
        self._pending: dict[str, _Pending] = {}
        self._ext_to_core: dict[str, str] = {}
        self._core_to_ext: dict[str, str] = {}
        self._pending_seq = 0
        self._liq_seen = 0
        self._streams: list[_Stream] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 = an ephemeral port); returns the base URL."""
        app = web.Application()
        app.router.add_route("GET", "/ws", self._ws)
        app.router.add_route("GET", "/ws/{stream}", self._ws)
        app.router.add_route("GET", "/{category}/ws", self._ws)
        app.router.add_route("GET", "/{category}/ws/{stream}", self._ws)
        app.router.add_route("*", "/{tail:.*}", self._http)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        await self._site.start()
        server = self._site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])
        self.host = host
        return self.url

    async def stop(self) -> None:
        self._stopping.set()
        for stream in list(self._streams):
            await stream.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """Base URL of the REST API (``http://127.0.0.1:<port>``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base URL of the market streams, as ccxt's ``urls['api']['ws']['linear']`` wants it."""
        return f"ws://{self.host}:{self.port}/ws"

    def now_ms(self) -> int:
        return int(self.clock() * 1000) + self.clock_skew_ms

    # ------------------------------------------------------------------ test / control hooks

    def inject(self, fault: Fault) -> Fault:
        """Queue a fault; returns it (its ``hits`` counts matches)."""
        self.faults.append(fault)
        return fault

    def set_price(self, symbol: str, last: float, mark: float | None = None) -> None:
        """A new last (and mark) price: fills, triggers and liquidations run; streams are fed."""
        now = max(self.now_ms(), self.core.now_ms)
        self.core.on_price(symbol, float(last), now, None if mark is None else float(mark))
        m = self.core.market(symbol)
        price = self.core.mark_price(symbol)
        event = {
            "e": "markPriceUpdate",
            "E": now,
            "s": m.id,
            "p": _s(price),
            "i": _s(price),
            "P": _s(price),
            "r": _s(self.core.funding_rate(symbol, now)),
            "T": PaperCore.next_funding_time(now),
        }
        self._publish(f"{m.id.lower()}@markPrice", event)
        self._publish("!markPrice@arr", [event])
        for liq in self.core.liquidations[self._liq_seen :]:
            lm = self.core.market(liq.symbol)
            self._publish_liquidation(
                lm.id, "SELL" if liq.side == "long" else "BUY", liq.amount, liq.price, liq.ts
            )
        self._liq_seen = len(self.core.liquidations)

    def open_external_position(self, symbol: str, side: str, amount: float) -> dict[str, Any]:
        """A market order placed outside the bot (web UI, another program): no client id."""
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        return self.core.create_order(symbol, "market", side, amount, None, {"tag": "external"})

    def emit_liquidation(self, symbol: str, side: str, amount: float, price: float) -> None:
        """Another trader's forced liquidation (``side`` of the liquidation order: buy/sell)."""
        m = self.core.market(symbol)
        self._publish_liquidation(m.id, side.upper(), amount, price, self.now_ms())

    def request_count(self, method: str | None = None, path: str | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        )

    def client_ids(self) -> dict[str, list[str]]:
        """Every client order id the emulator accepted and the order ids that used it."""
        return {cid: list(oids) for cid, oids in self._oids_by_cid.items()}

    def orders(self) -> list[dict[str, Any]]:
        """Every order the core holds (ccxt dicts, with the emulator's ids and client ids)."""
        out = []
        for state in self.core.snapshot()["orders"]:
            oid = str(state["seq"])
            o = self.core.fetch_order(oid)
            ext = self._core_to_ext.get(oid, oid)
            out.append({**o, "id": ext, "clientOrderId": self._cid_by_oid.get(ext)})
        return out

    # ------------------------------------------------------------------ HTTP plumbing

    async def _http(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info.get("tail", "")
        method = request.method
        body = await request.text() if request.can_read_body else ""
        raw_query = request.query_string
        params: dict[str, str] = dict(parse_qsl(raw_query, keep_blank_values=True))
        if body and request.content_type != "application/json":
            params.update(parse_qsl(body, keep_blank_values=True))
        shown = {k: v for k, v in params.items() if k != "signature"}
        if path.startswith("/_control/"):
            return await self._control(path, method, request, body)
        fault = None
        try:
            route = _ROUTES.get((method, path))
            if route is None:
                raise ApiError(-1000, f"emulator: no endpoint {method} {path}", 404)
            name, signed = route
            if signed:
                self._authenticate(request, raw_query, body, params)
            fault = next((f for f in self.faults if f.matches(method, path, params)), None)
            if fault is not None:
                fault.times -= 1
                fault.hits += 1
            if fault is not None and fault.kind in ("rate_limit", "reject"):
                return self._fault_response(fault, method, path, shown)
            if fault is not None and fault.kind == "server_error" and not fault.after_accept:
                return self._fault_response(fault, method, path, shown)
            handler: Callable[[dict[str, str], Fault | None], Any] = getattr(self, name)
            payload = handler(params, fault)
        except ApiError as err:
            self.requests.append(RequestRecord(method, path, shown, err.status))
            return web.json_response({"code": err.code, "msg": err.msg}, status=err.status)
        if fault is not None and fault.kind == "server_error":  # processed, answered 5xx
            return self._fault_response(fault, method, path, shown)
        self.requests.append(RequestRecord(method, path, shown, 200))
        if fault is not None and fault.kind == "timeout":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.delay_s)
        if fault is not None and fault.kind == "disconnect":
            transport = request.transport
            if transport is not None:
                transport.abort()
            return web.Response(status=500)
        return web.json_response(payload)

    def _fault_response(
        self, fault: Fault, method: str, path: str, shown: Mapping[str, str]
    ) -> web.Response:
        if fault.kind == "rate_limit":
            status, code = 429, -1003
            msg = "Too many requests; current limit is 2400 requests per minute."
            headers = {"Retry-After": str(fault.retry_after_s)}
        elif fault.kind == "reject":
            status, code, msg, headers = 400, fault.code, fault.msg, {}
        else:
            status, code, msg, headers = fault.status, fault.code, fault.msg, {}
        self.requests.append(RequestRecord(method, path, dict(shown), status))
        return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)

    def _authenticate(
        self, request: web.Request, raw_query: str, body: str, params: Mapping[str, str]
    ) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(key, self.api_key):
            raise ApiError(
                -2015, "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1", 401
            )
        signature = params.get("signature")
        if signature is None:
            raise ApiError(-1102, _missing("signature"))
        payload = _SIGNATURE_RE.sub("", raw_query).lstrip("&") + _SIGNATURE_RE.sub("", body).lstrip(
            "&"
        )
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(-1022, "Signature for this request is not valid.")
        stamp = params.get("timestamp")
        if stamp is None or not stamp.isdigit():
            raise ApiError(-1102, _missing("timestamp"))
        window_text = params.get("recvWindow", str(RECV_WINDOW_DEFAULT_MS))
        if not window_text.isdigit() or int(window_text) > RECV_WINDOW_MAX_MS:
            raise ApiError(-1131, "recvWindow must be less than 60000")
        now = self.now_ms()
        ts = int(stamp)
        if ts >= now + FUTURE_TOLERANCE_MS or now - ts > int(window_text):
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    async def _control(
        self, path: str, method: str, request: web.Request, body: str
    ) -> web.StreamResponse:
        try:
            data: dict[str, Any] = json.loads(body) if body else {}
            if method == "POST" and path == "/_control/price":
                self.set_price(str(data["symbol"]), float(data["last"]), data.get("mark"))
                return web.json_response({"ok": True, "mark": self.core.mark_price(data["symbol"])})
            if method == "POST" and path == "/_control/fault":
                fault = self.inject(Fault(**data))
                return web.json_response({"ok": True, "kind": fault.kind})
            if method == "POST" and path == "/_control/position":
                order = self.open_external_position(
                    str(data["symbol"]), str(data["side"]), float(data["amount"])
                )
                return web.json_response({"ok": True, "order": order["id"]})
            if method == "POST" and path == "/_control/liquidation":
                self.emit_liquidation(
                    str(data["symbol"]),
                    str(data["side"]),
                    float(data["amount"]),
                    float(data["price"]),
                )
                return web.json_response({"ok": True})
            if method == "GET" and path == "/_control/state":
                return web.json_response(self.state(), dumps=lambda o: json.dumps(o, default=str))
        except (KeyError, TypeError, ValueError, BaseError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return web.json_response({"ok": False, "error": error}, status=400)
        return web.json_response({"ok": False, "error": f"no control {method} {path}"}, status=404)

    def state(self) -> dict[str, Any]:
        """Balances, positions and open orders (the control endpoint's answer)."""
        core = self.core
        return {
            "wallet_balance": core.wallet_balance,
            "equity": core.equity(),
            "positions": core.positions(),
            "open_orders": core.open_orders(),
            "liquidations": [e.to_dict() for e in core.liquidations],
        }

    # ------------------------------------------------------------------ helpers

    def _market(self, params: Mapping[str, str], required: bool = True) -> PaperMarket | None:
        market_id = params.get("symbol")
        if market_id is None:
            if required:
                raise ApiError(-1102, _missing("symbol"))
            return None
        market = self._by_id.get(market_id)
        if market is None:
            raise ApiError(-1121, "Invalid symbol.")
        return market

    def _ext(self, core_id: str) -> str:
        return self._core_to_ext.get(core_id, core_id)

    def _core_id(self, ext_id: str) -> str:
        return self._ext_to_core.get(ext_id, ext_id)

    def _open_cid(self, cid: str) -> bool:
        for ext in self._oids_by_cid.get(cid, ()):
            if ext in self._pending:
                return True
            try:
                if self.core.fetch_order(self._core_id(ext))["status"] == "open":
                    return True
            except OrderNotFound:
                continue
        return False

    def _register(self, ext_id: str, cid: str) -> None:
        self._cid_by_oid[ext_id] = cid
        self._oids_by_cid.setdefault(cid, []).append(ext_id)

    def _new_client_id(self) -> str:
        return "emu" + uuid.uuid4().hex[:20]

    def _lookup(self, params: Mapping[str, str], algo: bool) -> str:
        """The external order id a query names (orderId/algoId or a client id)."""
        id_key = "algoId" if algo else "orderId"
        cid_key = "clientAlgoId" if algo else "origClientOrderId"
        ext = params.get(id_key)
        if ext is None:
            cid = params.get(cid_key)
            if cid is None:
                raise ApiError(-1102, f"Either '{id_key}' or '{cid_key}' must be sent.")
            ids = self._oids_by_cid.get(cid)
            if not ids:
                raise ApiError(-2013, "Order does not exist.")
            ext = ids[-1]
        if ext not in self._pending and ext not in self._cid_by_oid:
            # orders placed from outside carry no registered client id but exist in the core
            try:
                self.core.fetch_order(self._core_id(ext))
            except OrderNotFound:
                raise ApiError(-2013, "Order does not exist.") from None
        return ext

    # ------------------------------------------------------------------ order placement

    def _place(self, params: dict[str, str], fault: Fault | None, algo: bool) -> dict[str, Any]:
        market = self._market(params)
        assert market is not None
        symbol = market.symbol
        side = params.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        if params.get("positionSide", "BOTH") != "BOTH" or self.hedge_mode:
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        typ = params.get("type", "").upper()
        close_position = _bool(params.get("closePosition"))
        reduce_only = _bool(params.get("reduceOnly"))
        if close_position and "reduceOnly" in params:
            raise ApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
        if close_position and "quantity" in params:
            raise ApiError(-1106, "Parameter 'quantity' sent when not required.")
        cid_key = "clientAlgoId" if algo else "newClientOrderId"
        cid = params.get(cid_key) or self._new_client_id()
        if not CLIENT_ID_RE.match(cid):
            raise ApiError(-4015, "Client order id is not valid.")
        if self._open_cid(cid):
            raise ApiError(-4116, "ClientOrderId is duplicated.")
        rules = market.rules
        core_params: dict[str, Any] = {}
        price: float | None = None
        if algo:
            if params.get("algoType") != "CONDITIONAL":
                raise ApiError(-1102, _missing("algoType"))
            trigger_text = params.get("triggerPrice")
            if trigger_text is None:
                raise ApiError(-1102, _missing("triggerPrice"))
            trigger = float(trigger_text)
            if not _on_grid(trigger, rules.price_step):
                raise ApiError(-4014, "Price not increased by tick size.")
            if typ == "STOP_MARKET":
                core_params["stopLossPrice"] = trigger
            elif typ == "TAKE_PROFIT_MARKET":
                core_params["takeProfitPrice"] = trigger
            else:
                raise ApiError(-1116, "Invalid orderType.")
            if close_position and self._close_position_standing(symbol, typ, side):
                raise ApiError(
                    -4130,
                    "An open stop or take profit order with GTE and closePosition "
                    "in the direction is existing.",
                )
            kind = "market"
        else:
            if typ in _ALGO_TYPES:
                raise ApiError(
                    -4120,
                    "Order type not supported for this endpoint. "
                    "Please use the Algo Order API endpoints instead.",
                )
            if typ not in ("MARKET", "LIMIT"):
                raise ApiError(-1116, "Invalid orderType.")
            if close_position:
                raise ApiError(-1106, "Parameter 'closePosition' sent when not required.")
            kind = typ.lower()
            if kind == "limit":
                price_text = params.get("price")
                if price_text is None:
                    raise ApiError(-1102, _missing("price"))
                price = float(price_text)
                if not _on_grid(price, rules.price_step):
                    raise ApiError(-4014, "Price not increased by tick size.")
                tif = params.get("timeInForce")
                if tif is None:
                    raise ApiError(-1102, _missing("timeInForce"))
                if tif == "GTX":
                    core_params["postOnly"] = True
        qty = 0.0
        if not close_position:
            qty_text = params.get("quantity")
            if qty_text is None:
                raise ApiError(-1102, _missing("quantity"))
            qty = float(qty_text)
            if qty <= 0:
                raise ApiError(-4003, "Quantity less than or equal to zero.")
            if not _on_grid(qty, rules.amount_step):
                raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
        working = params.get("workingType")
        if working is not None:
            if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
                raise ApiError(-1116, "Invalid workingType.")
            core_params["workingType"] = working
        if reduce_only:
            core_params["reduceOnly"] = True
        if close_position:
            core_params["closePosition"] = True
        now = max(self.now_ms(), self.core.now_ms)
        self.core.set_time(now)
        if fault is not None and fault.kind == "open_then_filled" and kind == "market":
            return self._pend(market, cid, side, qty, core_params, fault.polls, now)
        fill_qty = qty
        if fault is not None and fault.kind == "partial_fill" and kind == "market":
            steps = math.floor(qty * fault.fill_ratio / rules.amount_step + _EPS)
            fill_qty = max(1, steps) * rules.amount_step
            fill_qty = float(_s(round(fill_qty, 12)))
        try:
            order = self.core.create_order(symbol, kind, side.lower(), fill_qty, price, core_params)
        except BaseError as exc:
            raise _api_error(exc) from None
        ext = order["id"]
        self._register(ext, cid)
        if fill_qty != qty:
            self._overlay[ext] = {"origQty": _s(qty), "status": "EXPIRED"}
        return self._algo_json(order) if algo else self._order_json(order)

    def _close_position_standing(self, symbol: str, typ: str, side: str) -> bool:
        """Binance keeps one closePosition order per kind and direction."""
        kind = typ.lower()
        return any(
            o["type"] == kind and o["side"] == side.lower() and o["info"].get("closePosition")
            for o in self.core.open_orders(symbol)
        )

    def _pend(
        self,
        market: PaperMarket,
        cid: str,
        side: str,
        qty: float,
        core_params: dict[str, Any],
        polls: int,
        now: int,
    ) -> dict[str, Any]:
        if math.isnan(self.core.last_price(market.symbol) or math.nan):
            raise ApiError(-2010, "No price yet.")
        self._pending_seq += 1
        ext = str(_PENDING_BASE + self._pending_seq)
        pending = _Pending(ext, cid, market.symbol, side, qty, core_params, max(1, polls), now)
        self._pending[ext] = pending
        self._register(ext, cid)
        return self._pending_json(pending)

    def _advance_pending(self, ext: str) -> None:
        pending = self._pending.get(ext)
        if pending is None:
            return
        pending.polls -= 1
        if pending.polls > 0:
            return
        del self._pending[ext]
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        try:
            order = self.core.create_order(
                pending.symbol, "market", pending.side.lower(), pending.qty, None, pending.params
            )
        except BaseError:
            self._overlay[ext] = {"status": "EXPIRED"}
            self._ext_to_core[ext] = ""
            return
        self._ext_to_core[ext] = order["id"]
        self._core_to_ext[order["id"]] = ext

    # ------------------------------------------------------------------ JSON shapes

    def _status(self, order: Mapping[str, Any]) -> str:
        status = order["status"]
        if status == "open":
            return "PARTIALLY_FILLED" if order["filled"] > 0 else "NEW"
        return {"closed": "FILLED", "canceled": "CANCELED", "rejected": "REJECTED"}.get(
            status, "EXPIRED"
        )

    def _order_json(self, order: Mapping[str, Any]) -> dict[str, Any]:
        ext = self._ext(order["id"])
        market = self.core.market(order["symbol"])
        info = order["info"]
        typ = str(order["type"]).upper()
        avg = order["average"]
        out: dict[str, Any] = {
            "orderId": int(ext),
            "symbol": market.id,
            "status": self._status(order),
            "clientOrderId": self._cid_by_oid.get(ext, ""),
            "price": _s(order["price"] if order["type"] == "limit" else 0),
            "avgPrice": _s(avg or 0),
            "origQty": _s(order["amount"]),
            "executedQty": _s(order["filled"]),
            "cumQty": _s(order["filled"]),
            "cumQuote": _s(order["cost"]),
            "timeInForce": "GTC",
            "type": typ,
            "reduceOnly": bool(order["reduceOnly"]),
            "closePosition": bool(info.get("closePosition")),
            "side": str(order["side"]).upper(),
            "positionSide": "BOTH",
            "stopPrice": _s(order["triggerPrice"] or 0),
            "workingType": info.get("workingType", "CONTRACT_PRICE"),
            "priceProtect": False,
            "origType": typ,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": order["timestamp"],
            "updateTime": order["lastUpdateTimestamp"] or order["timestamp"],
        }
        out.update(self._overlay.get(ext, {}))
        return out

    def _algo_json(self, order: Mapping[str, Any]) -> dict[str, Any]:
        ext = self._ext(order["id"])
        market = self.core.market(order["symbol"])
        info = order["info"]
        status = order["status"]
        algo_status = {"open": "NEW", "closed": "FINISHED", "canceled": "CANCELED"}.get(
            status, "EXPIRED"
        )
        closed = status == "closed"
        return {
            "algoId": int(ext),
            "clientAlgoId": self._cid_by_oid.get(ext, ""),
            "algoType": "CONDITIONAL",
            "orderType": str(order["type"]).upper(),
            "symbol": market.id,
            "side": str(order["side"]).upper(),
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": _s(order["amount"]),
            "algoStatus": algo_status,
            "actualOrderId": int(ext) if closed else "",
            "actualPrice": _s(order["average"] or 0),
            "triggerPrice": _s(order["triggerPrice"]),
            "price": "0",
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": info.get("workingType", "CONTRACT_PRICE"),
            "priceMatch": "NONE",
            "closePosition": bool(info.get("closePosition")),
            "priceProtect": False,
            "reduceOnly": bool(order["reduceOnly"]),
            "createTime": order["timestamp"],
            "updateTime": order["lastUpdateTimestamp"] or order["timestamp"],
            "triggerTime": order["lastTradeTimestamp"] or 0,
            "goodTillDate": 0,
        }

    def _pending_json(self, p: _Pending) -> dict[str, Any]:
        return {
            "orderId": int(p.ext_id),
            "symbol": self.core.market(p.symbol).id,
            "status": "NEW",
            "clientOrderId": p.client_id,
            "price": "0",
            "avgPrice": "0",
            "origQty": _s(p.qty),
            "executedQty": "0",
            "cumQty": "0",
            "cumQuote": "0",
            "timeInForce": "GTC",
            "type": "MARKET",
            "reduceOnly": bool(p.params.get("reduceOnly")),
            "closePosition": False,
            "side": p.side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": "MARKET",
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": p.time_ms,
            "updateTime": p.time_ms,
        }

    def _ext_order_json(self, ext: str, algo: bool) -> dict[str, Any]:
        pending = self._pending.get(ext)
        if pending is not None:
            if algo:
                raise ApiError(-2013, "Order does not exist.")
            return self._pending_json(pending)
        core_id = self._core_id(ext)
        if core_id == "":
            overlay = self._overlay.get(ext, {})
            raise ApiError(-2013, f"Order does not exist ({overlay.get('status', '')}).")
        try:
            order = self.core.fetch_order(core_id)
        except OrderNotFound:
            raise ApiError(-2013, "Order does not exist.") from None
        is_trigger = order["triggerPrice"] is not None
        if is_trigger != algo:
            raise ApiError(-2013, "Order does not exist.")
        return self._algo_json(order) if algo else self._order_json(order)

    # ------------------------------------------------------------------ endpoints: public

    def ep_ping(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {}

    def ep_time(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {"serverTime": self.now_ms()}

    def ep_exchange_info(self, params: dict[str, str], fault: Fault | None) -> Any:
        symbols = []
        for s in self.core.symbols:
            m = self.core.market(s)
            r = m.rules
            symbols.append(
                {
                    "symbol": m.id,
                    "pair": m.id,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": m.base,
                    "quoteAsset": m.quote,
                    "marginAsset": m.settle,
                    "pricePrecision": _decimals(r.price_step),
                    "quantityPrecision": _decimals(r.amount_step),
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "triggerProtect": "0.0500",
                    "liquidationFee": _s(r.liquidation_fee_rate),
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _s(m.min_price or r.price_step),
                            "maxPrice": _s(m.max_price or 1e9),
                            "tickSize": _s(r.price_step),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": _s(r.min_amount or r.amount_step),
                            "maxQty": _s(m.max_amount or 1e9),
                            "stepSize": _s(r.amount_step),
                        },
                        {
                            "filterType": "MARKET_LOT_SIZE",
                            "minQty": _s(r.min_amount or r.amount_step),
                            "maxQty": _s(m.max_market_amount or m.max_amount or 1e9),
                            "stepSize": _s(r.amount_step),
                        },
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": _s(r.min_notional)},
                        {
                            "filterType": "PERCENT_PRICE",
                            "multiplierUp": "1.0500",
                            "multiplierDown": "0.9500",
                            "multiplierDecimal": "4",
                        },
                    ],
                    "orderTypes": [
                        "LIMIT",
                        "MARKET",
                        "STOP",
                        "STOP_MARKET",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_MARKET",
                        "TRAILING_STOP_MARKET",
                    ],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                }
            ],
            "exchangeFilters": [],
            "assets": [{"asset": self.core.currency, "marginAvailable": True}],
            "symbols": symbols,
        }

    def _ticker_json(self, m: PaperMarket) -> dict[str, Any]:
        last = self.core.last_price(m.symbol)
        now = self.now_ms()
        return {
            "symbol": m.id,
            "priceChange": "0",
            "priceChangePercent": "0",
            "weightedAvgPrice": _s(last),
            "lastPrice": _s(last),
            "lastQty": "0",
            "openPrice": _s(last),
            "highPrice": _s(last),
            "lowPrice": _s(last),
            "volume": "0",
            "quoteVolume": "0",
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": 0,
            "lastId": 0,
            "count": 0,
        }

    def ep_ticker_24hr(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params, required=False)
        if m is not None:
            return self._ticker_json(m)
        return [self._ticker_json(self.core.market(s)) for s in self.core.symbols]

    def ep_ticker_price(self, params: dict[str, str], fault: Fault | None) -> Any:
        def one(m: PaperMarket) -> dict[str, Any]:
            return {
                "symbol": m.id,
                "price": _s(self.core.last_price(m.symbol)),
                "time": self.now_ms(),
            }

        m = self._market(params, required=False)
        if m is not None:
            return one(m)
        return [one(self.core.market(s)) for s in self.core.symbols]

    def _premium_json(self, m: PaperMarket) -> dict[str, Any]:
        now = self.now_ms()
        mark = self.core.mark_price(m.symbol)
        return {
            "symbol": m.id,
            "markPrice": _s(mark),
            "indexPrice": _s(mark),
            "estimatedSettlePrice": _s(mark),
            "lastFundingRate": _s(self.core.funding_rate(m.symbol, now)),
            "interestRate": "0.00010000",
            "nextFundingTime": PaperCore.next_funding_time(now),
            "time": now,
        }

    def ep_premium_index(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params, required=False)
        if m is not None:
            return self._premium_json(m)
        return [self._premium_json(self.core.market(s)) for s in self.core.symbols]

    # ------------------------------------------------------------------ endpoints: account

    def ep_leverage_bracket(self, params: dict[str, str], fault: Fault | None) -> Any:
        chosen = self._market(params, required=False)
        markets = (
            [chosen] if chosen is not None else [self.core.market(s) for s in self.core.symbols]
        )
        out = []
        for m in markets:
            brackets = []
            for i, t in enumerate(m.rules.tiers):
                brackets.append(
                    {
                        "bracket": i + 1,
                        "initialLeverage": int(t.max_leverage),
                        "notionalCap": t.max_notional if math.isfinite(t.max_notional) else 1e15,
                        "notionalFloor": t.min_notional,
                        "maintMarginRatio": t.mmr,
                        "cum": t.maint_amount,
                    }
                )
            out.append({"symbol": m.id, "brackets": brackets})
        return out[0] if chosen is not None else out

    def _position_json(self, p: Mapping[str, Any]) -> dict[str, Any]:
        m = self.core.market(p["symbol"])
        sign = 1 if p["side"] == "long" else -1
        isolated = p["marginMode"] == "isolated"
        margin = float(p["info"]["isolatedMargin"]) if isolated else 0.0
        upnl = float(p["unrealizedPnl"])
        return {
            "symbol": m.id,
            "positionSide": "BOTH",
            "positionAmt": _s(sign * float(p["contracts"])),
            "entryPrice": _s(p["entryPrice"]),
            "breakEvenPrice": _s(p["entryPrice"]),
            "markPrice": _s(p["markPrice"]),
            "unRealizedProfit": _s(upnl),
            "liquidationPrice": _s(p["liquidationPrice"] or 0),
            "isolatedMargin": _s(margin + upnl if isolated else 0),
            "notional": _s(sign * float(p["notional"])),
            "marginAsset": self.core.currency,
            "isolatedWallet": _s(margin),
            "initialMargin": _s(p["initialMargin"]),
            "maintMargin": _s(p["maintenanceMargin"]),
            "positionInitialMargin": _s(p["initialMargin"]),
            "openOrderInitialMargin": "0",
            "adl": 1,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": p["timestamp"],
        }

    def ep_position_risk(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params, required=False)
        symbols = None if m is None else [m.symbol]
        return [self._position_json(p) for p in self.core.positions(symbols)]

    def _asset_json(self) -> dict[str, Any]:
        core = self.core
        now = self.now_ms()
        wallet = core.wallet_balance
        upnl = core.unrealized_pnl()
        free = core.free_margin
        initial = sum(float(p["initialMargin"]) for p in core.positions())
        maint = sum(float(p["maintenanceMargin"]) for p in core.positions())
        return {
            "asset": core.currency,
            "walletBalance": _s(wallet),
            "unrealizedProfit": _s(upnl),
            "marginBalance": _s(wallet + upnl),
            "maintMargin": _s(maint),
            "initialMargin": _s(initial),
            "positionInitialMargin": _s(initial),
            "openOrderInitialMargin": "0",
            "crossWalletBalance": _s(core.cross_wallet_balance),
            "crossUnPnl": _s(upnl),
            "availableBalance": _s(free),
            "maxWithdrawAmount": _s(max(free, 0.0)),
            "marginAvailable": True,
            "updateTime": now,
        }

    def ep_account(self, params: dict[str, str], fault: Fault | None) -> Any:
        core = self.core
        asset = self._asset_json()
        return {
            "totalInitialMargin": asset["initialMargin"],
            "totalMaintMargin": asset["maintMargin"],
            "totalWalletBalance": asset["walletBalance"],
            "totalUnrealizedProfit": asset["unrealizedProfit"],
            "totalMarginBalance": asset["marginBalance"],
            "totalPositionInitialMargin": asset["positionInitialMargin"],
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": asset["crossWalletBalance"],
            "totalCrossUnPnl": asset["crossUnPnl"],
            "availableBalance": asset["availableBalance"],
            "maxWithdrawAmount": asset["maxWithdrawAmount"],
            "assets": [asset],
            "positions": [
                {
                    "symbol": self.core.market(p["symbol"]).id,
                    "positionSide": "BOTH",
                    "positionAmt": _s((1 if p["side"] == "long" else -1) * p["contracts"]),
                    "unrealizedProfit": _s(p["unrealizedPnl"]),
                    "isolatedMargin": _s(p["info"]["isolatedMargin"]),
                    "notional": _s(p["notional"]),
                    "isolatedWallet": _s(p["info"]["isolatedWallet"]),
                    "initialMargin": _s(p["initialMargin"]),
                    "maintMargin": _s(p["maintenanceMargin"]),
                    "updateTime": p["timestamp"],
                }
                for p in core.positions()
            ],
        }

    def ep_balance(self, params: dict[str, str], fault: Fault | None) -> Any:
        asset = self._asset_json()
        return [
            {
                "accountAlias": "emulator",
                "asset": asset["asset"],
                "balance": asset["walletBalance"],
                "crossWalletBalance": asset["crossWalletBalance"],
                "crossUnPnl": asset["crossUnPnl"],
                "availableBalance": asset["availableBalance"],
                "maxWithdrawAmount": asset["maxWithdrawAmount"],
                "marginAvailable": True,
                "updateTime": asset["updateTime"],
            }
        ]

    def ep_leverage(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params)
        assert m is not None
        text = params.get("leverage", "")
        if not text.isdigit():
            raise ApiError(-1100, "Illegal characters found in parameter 'leverage'.")
        lev = int(text)
        try:
            self.core.set_leverage(lev, m.symbol)
        except BaseError:
            raise ApiError(-4028, f"Leverage {lev} is not valid") from None
        tiers = m.rules.tiers
        cap = next((t.max_notional for t in reversed(tiers) if t.max_leverage >= lev), 0.0)
        return {"leverage": lev, "maxNotionalValue": _s(cap), "symbol": m.id}

    def ep_margin_type(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params)
        assert m is not None
        wanted = params.get("marginType", "").upper()
        if wanted not in ("ISOLATED", "CROSSED"):
            raise ApiError(-1116, "Invalid marginType.")
        mode = "isolated" if wanted == "ISOLATED" else "cross"
        if self.core.margin_mode(m.symbol) == mode:
            raise ApiError(-4046, "No need to change margin type.")
        try:
            self.core.set_margin_mode(mode, m.symbol)
        except OperationRejected:
            if self.core.position(m.symbol) is not None:
                raise ApiError(
                    -4048, "Margin type cannot be changed if there exists position."
                ) from None
            raise ApiError(
                -4047, "Margin type cannot be changed if there exists open orders."
            ) from None
        return {"code": 200, "msg": "success"}

    def ep_position_side_dual(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {"dualSidePosition": self.hedge_mode}

    def ep_api_restrictions(self, params: dict[str, str], fault: Fault | None) -> Any:
        return dict(self.permissions)

    def ep_listen_key(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {"listenKey": hashlib.sha256(self.api_key.encode()).hexdigest()}

    # ------------------------------------------------------------------ endpoints: orders

    def ep_new_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._place(params, fault, algo=False)

    def ep_new_algo_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._place(params, fault, algo=True)

    def ep_get_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._market(params)
        ext = self._lookup(params, algo=False)
        self._advance_pending(ext)
        return self._ext_order_json(ext, algo=False)

    def ep_get_algo_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        ext = self._lookup(params, algo=True)
        return self._ext_order_json(ext, algo=True)

    def _cancel(self, params: dict[str, str], algo: bool) -> dict[str, Any]:
        m = self._market(params)
        assert m is not None
        try:
            ext = self._lookup(params, algo)
        except ApiError:
            raise ApiError(-2011, "Unknown order sent.") from None
        pending = self._pending.pop(ext, None)
        if pending is not None:
            self._overlay[ext] = {"status": "CANCELED"}
            self._ext_to_core[ext] = ""
            return {**self._pending_json(pending), "status": "CANCELED"}
        try:
            order = self.core.fetch_order(self._core_id(ext))
            if (order["triggerPrice"] is not None) != algo or order["symbol"] != m.symbol:
                raise OrderNotFound(ext)
            order = self.core.cancel_order(order["id"], m.symbol)
        except (OrderNotFound, BadRequest):
            raise ApiError(-2011, "Unknown order sent.") from None
        if algo:
            return {
                "algoId": int(ext),
                "clientAlgoId": self._cid_by_oid.get(ext, ""),
                "code": "200",
                "msg": "success",
            }
        return self._order_json(order)

    def ep_cancel_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel(params, algo=False)

    def ep_cancel_algo_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel(params, algo=True)

    def _open(self, params: dict[str, str], algo: bool) -> list[dict[str, Any]]:
        m = self._market(params, required=False)
        symbol = None if m is None else m.symbol
        out = []
        for o in self.core.open_orders(symbol):
            if (o["triggerPrice"] is not None) == algo:
                out.append(self._algo_json(o) if algo else self._order_json(o))
        if not algo:
            for p in self._pending.values():
                if symbol is None or p.symbol == symbol:
                    out.append(self._pending_json(p))
        return out

    def ep_open_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._open(params, algo=False)

    def ep_open_algo_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._open(params, algo=True)

    def _cancel_all(self, params: dict[str, str], algo: bool) -> dict[str, Any]:
        m = self._market(params)
        assert m is not None
        for o in self.core.open_orders(m.symbol):
            if (o["triggerPrice"] is not None) == algo:
                self.core.cancel_order(o["id"], m.symbol)
        if not algo:
            for ext, p in list(self._pending.items()):
                if p.symbol == m.symbol:
                    del self._pending[ext]
                    self._overlay[ext] = {"status": "CANCELED"}
                    self._ext_to_core[ext] = ""
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def ep_cancel_all(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel_all(params, algo=False)

    def ep_cancel_all_algo(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel_all(params, algo=True)

    # ------------------------------------------------------------------ market streams

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        stream = _Stream(ws)
        self._streams.append(stream)
        writer = asyncio.ensure_future(stream.write_loop())
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                method = data.get("method")
                names = [str(n) for n in data.get("params") or []]
                if method == "SUBSCRIBE":
                    stream.topics.update(_topic(n) for n in names)
                elif method == "UNSUBSCRIBE":
                    stream.topics.difference_update(_topic(n) for n in names)
                stream.queue.put_nowait({"result": None, "id": data.get("id")})
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if stream in self._streams:
                self._streams.remove(stream)
        return ws

    def _publish(self, topic: str, message: Any) -> None:
        for stream in self._streams:
            if topic in stream.topics:
                stream.queue.put_nowait(message)

    def _publish_liquidation(
        self, market_id: str, side: str, amount: float, price: float, ts: int
    ) -> None:
        event = {
            "e": "forceOrder",
            "E": ts,
            "o": {
                "s": market_id,
                "S": side,
                "o": "LIMIT",
                "f": "IOC",
                "q": _s(amount),
                "p": _s(price),
                "ap": _s(price),
                "X": "FILLED",
                "l": _s(amount),
                "z": _s(amount),
                "T": ts,
            },
        }
        self.market_liquidations.append(event)
        self._publish(f"{market_id.lower()}@forceOrder", event)
        self._publish("!forceOrder@arr", event)


def _topic(name: str) -> str:
    """A stream name without its update-speed suffix (``@1s``, ``@500ms``)."""
    for suffix in ("@1s", "@3s", "@500ms", "@100ms"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class _Stream:
    """One websocket connection: its subscriptions and an outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.topics: set[str] = set()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def write_loop(self) -> None:
        while True:
            message = await self.queue.get()
            if self.ws.closed:
                return
            await self.ws.send_str(json.dumps(message))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


def _api_error(exc: BaseError) -> ApiError:
    """The Binance error a paper-core refusal corresponds to."""
    text = str(exc).removeprefix("paper ")
    if isinstance(exc, DuplicateOrderId):
        return ApiError(-4116, "ClientOrderId is duplicated.")
    if isinstance(exc, InsufficientFunds):
        return ApiError(-2019, "Margin is insufficient.")
    if isinstance(exc, OrderImmediatelyFillable):
        return ApiError(-2021, "Order would immediately trigger.")
    if isinstance(exc, OrderNotFound):
        return ApiError(-2013, "Order does not exist.")
    if isinstance(exc, BadSymbol):
        return ApiError(-1121, "Invalid symbol.")
    if isinstance(exc, NotSupported):
        return ApiError(-1116, "Invalid orderType.")
    if isinstance(exc, InvalidOrder):
        if "notional" in text:
            return ApiError(-4164, text)
        if "ReduceOnly" in text:
            return ApiError(-2022, "ReduceOnly Order is rejected.")
        if "maximum allowable position" in text:
            return ApiError(-2027, "Exceeded the maximum allowable position at current leverage.")
        if "post-only" in text:
            return ApiError(
                -5022,
                "Due to the order could not be executed as maker, "
                "the Post Only order will be rejected.",
            )
        return ApiError(-2010, text)
    if isinstance(exc, OperationRejected):
        return ApiError(-4048, text)
    return ApiError(-1000, text)


_ROUTES: Final[dict[tuple[str, str], tuple[str, bool]]] = {
    ("GET", "/fapi/v1/ping"): ("ep_ping", False),
    ("GET", "/fapi/v1/time"): ("ep_time", False),
    ("GET", "/fapi/v1/exchangeInfo"): ("ep_exchange_info", False),
    ("GET", "/fapi/v1/ticker/24hr"): ("ep_ticker_24hr", False),
    ("GET", "/fapi/v1/ticker/price"): ("ep_ticker_price", False),
    ("GET", "/fapi/v2/ticker/price"): ("ep_ticker_price", False),
    ("GET", "/fapi/v1/premiumIndex"): ("ep_premium_index", False),
    ("GET", "/fapi/v1/leverageBracket"): ("ep_leverage_bracket", True),
    ("GET", "/fapi/v2/leverageBracket"): ("ep_leverage_bracket", True),
    ("GET", "/fapi/v3/positionRisk"): ("ep_position_risk", True),
    ("GET", "/fapi/v2/positionRisk"): ("ep_position_risk", True),
    ("GET", "/fapi/v3/account"): ("ep_account", True),
    ("GET", "/fapi/v2/account"): ("ep_account", True),
    ("GET", "/fapi/v2/balance"): ("ep_balance", True),
    ("GET", "/fapi/v3/balance"): ("ep_balance", True),
    ("POST", "/fapi/v1/leverage"): ("ep_leverage", True),
    ("POST", "/fapi/v1/marginType"): ("ep_margin_type", True),
    ("GET", "/fapi/v1/positionSide/dual"): ("ep_position_side_dual", True),
    ("POST", "/fapi/v1/order"): ("ep_new_order", True),
    ("GET", "/fapi/v1/order"): ("ep_get_order", True),
    ("DELETE", "/fapi/v1/order"): ("ep_cancel_order", True),
    ("GET", "/fapi/v1/openOrders"): ("ep_open_orders", True),
    ("DELETE", "/fapi/v1/allOpenOrders"): ("ep_cancel_all", True),
    ("POST", "/fapi/v1/algoOrder"): ("ep_new_algo_order", True),
    ("GET", "/fapi/v1/algoOrder"): ("ep_get_algo_order", True),
    ("DELETE", "/fapi/v1/algoOrder"): ("ep_cancel_algo_order", True),
    ("GET", "/fapi/v1/openAlgoOrders"): ("ep_open_algo_orders", True),
    ("DELETE", "/fapi/v1/algoOpenOrders"): ("ep_cancel_all_algo", True),
    ("POST", "/fapi/v1/listenKey"): ("ep_listen_key", False),
    ("PUT", "/fapi/v1/listenKey"): ("ep_listen_key", False),
    ("GET", "/sapi/v1/account/apiRestrictions"): ("ep_api_restrictions", True),
}


# ---------------------------------------------------------------------- command line


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    balance: float = 10_000.0,
    prices: Iterable[tuple[str, float]] = (),
    withdrawals: bool = False,
) -> None:
    """Serve the emulator until cancelled (``guardbot emulator``, ``python -m bot.emulator``).

    The API key and secret come from ``GUARDBOT_EXCHANGE__API_KEY`` / ``_API_SECRET`` (so the
    bot's own settings sign its requests), else placeholders; ``prices`` also select the markets.
    """
    key = os.environ.get("GUARDBOT_EXCHANGE__API_KEY", "emulator-key")
    secret = os.environ.get("GUARDBOT_EXCHANGE__API_SECRET", "emulator-secret")
    chosen = list(prices)
    symbols = sorted({s for s, _ in chosen}) or None
    emulator = Emulator(
        api_key=key,
        api_secret=secret,
        symbols=symbols,
        balance=balance,
        permissions={"enableWithdrawals": withdrawals},
    )
    for symbol, price in chosen:
        emulator.set_price(symbol, price)
    url = await emulator.start(host, port)
    print(f"guardbot emulator (Binance USDⓈ-M subset) on {url}", flush=True)
    print(f"  streams:  {emulator.ws_url}", flush=True)
    print(f"  markets:  {', '.join(emulator.core.symbols)}", flush=True)
    print(f"  api key:  {key}  (secret from GUARDBOT_EXCHANGE__API_SECRET)", flush=True)
    for line in (
        "  control:  POST /_control/price {symbol,last,mark?} | /_control/fault {...} |",
        "            /_control/position {symbol,side,amount} | /_control/liquidation",
        "            {symbol,side,amount,price} | GET /_control/state",
    ):
        print(line, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def parse_price(text: str) -> tuple[str, float]:
    """``SYMBOL=PRICE`` (e.g. ``BTC/USDT:USDT=60000``) as a pair."""
    symbol, sep, value = text.rpartition("=")
    if not sep or not symbol:
        raise ValueError(f"--price needs SYMBOL=PRICE, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--price needs SYMBOL=PRICE with a number, got {text!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"--price must be a positive number, got {text!r}")
    return symbol, number


def main(argv: list[str] | None = None) -> None:
    """``python -m bot.emulator``: serve the local exchange until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.emulator",
        description="Local exchange speaking Binance USDⓈ-M futures REST, backed by paper mode.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument("--balance", type=float, default=10_000.0, help="USDT wallet balance")
    parser.add_argument(
        "--price",
        type=_price_arg,
        action="append",
        help="starting price, e.g. BTC/USDT:USDT=60000 (repeat; also selects the markets)",
    )
    parser.add_argument(
        "--withdrawals",
        action="store_true",
        help="report the API key as withdrawal-enabled (to see preflight's warning)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                balance=args.balance,
                prices=args.price or [],
                withdrawals=args.withdrawals,
            )
        )


def _price_arg(text: str) -> tuple[str, float]:
    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    main()
