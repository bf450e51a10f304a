"""The emulator's server: HTTP and websocket plumbing, fault injection and the control API.

``EmulatorServer`` is an aiohttp server on 127.0.0.1 over one ``PaperCore``. It owns what every
venue shares: the request log, injected ``Fault``s (timeouts after the order was accepted,
dropped connections, 429 with Retry-After, 5xx, rejections, partial fills, an order that shows
as open then filled), websocket subscriptions, the unauthenticated ``/_control/`` API (price,
fault, position, liquidation, state). A venue
subclass (``bot.emulator.binance.BinanceEmulator``) supplies the routes, the request
authentication, the JSON shapes and the stream events.

Control API: ``POST /_control/price {symbol, last, mark?}``, ``POST /_control/fault {...}``,
``POST /_control/position {symbol, side, amount}`` (a trade placed outside the bot),
``POST /_control/liquidation {symbol, side, amount, price}`` (another trader's forced
liquidation), ``POST /_control/adl {symbol, price, amount?}`` (the exchange auto-deleverages the
account's position) and ``GET /_control/state``: balances, every position with its stop (or
none), every order with its client id and status, and the liquidations (the venue adds its own,
e.g. Binance's listen key and user-data streams), so a rehearsal can be audited over HTTP.

Venue hooks: ``_body_params`` (how a request body becomes parameters: form fields by default,
a JSON object or a one-element JSON array for Bybit and OKX, kept whole in ``body_json``),
``_error_payload`` (the venue's error body and HTTP status for a code and message),
``rate_limit_error`` (the venue's code and message for an injected 429), ``_after_change``
(called after every request, price and control action: Binance pushes its user-data events
there), ``_private_ws`` (the user-data stream at ``/private/ws``), ``_apply_fault`` (a fault
applied when injected, ``drop_user_stream``) and ``api_key_routes`` /
``_authenticate_api_key`` (unsigned routes that need the API key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from ccxt.base.errors import BaseError

from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import load_markets

FaultKind = Literal[
    "timeout",
    "disconnect",
    "rate_limit",
    "server_error",
    "reject",
    "partial_fill",
    "open_then_filled",
    "drop_user_stream",
]


#: Fault kinds applied when injected rather than matched to a request.
IMMEDIATE_FAULTS: frozenset[str] = frozenset({"drop_user_stream"})


class ApiError(Exception):
    """A venue error response: an HTTP status, a code and a message (the venue shapes the body:
    ``EmulatorServer._error_payload``; Binance's is ``{"code": ..., "msg": ...}``)."""

    def __init__(self, code: int | str, msg: str, status: int = 400) -> None:
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
      ``drop_user_stream`` applied when injected, not matched to requests: the server closes
                           every user-data stream connection and refuses new ones (HTTP 503
                           on the upgrade) for ``refuse_s`` seconds (the venue's streams)
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
    code: int | str = -1001
    msg: str = "Internal error; unable to process your request. Please try again."
    after_accept: bool = False
    fill_ratio: float = 0.5
    polls: int = 2
    #: ``drop_user_stream``: seconds during which reconnects are refused.
    refuse_s: float = 0.0
    #: How many requests matched this fault so far (read by tests).
    hits: int = 0

    def matches(self, method: str, path: str, params: Mapping[str, str]) -> bool:
        if self.kind in IMMEDIATE_FAULTS or self.times <= 0:
            return False
        if method != self.method or path != self.path:
            return False
        return all(params.get(k) == v for k, v in self.when.items())


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the emulator received (signature and key removed)."""

    method: str
    path: str
    params: Mapping[str, str]
    status: int


class EmulatorServer:
    """The shared server over a ``PaperCore``; a venue subclass speaks its protocol."""

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
        self.faults: list[Fault] = []
        #: The latest requests received (signature removed), for tests and the control API.
        self.requests: deque[RequestRecord] = deque(maxlen=100_000)
        self._streams: list[_Stream] = []
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._stopping = asyncio.Event()
        self.host = "127.0.0.1"
        self.port = 0

    #: ``(method, path) -> (handler method name, signed)`` of the venue's REST API.
    routes: Mapping[tuple[str, str], tuple[str, bool]] = {}
    #: Unsigned routes that still need the API key (Binance's USER_STREAM security type).
    api_key_routes: frozenset[tuple[str, str]] = frozenset()
    #: Code and message of an injected rate-limit refusal (HTTP 429).
    rate_limit_error: tuple[int | str, str] = (
        -1003,
        "Too many requests; current limit is 2400 requests per minute.",
    )
    #: The JSON body of the request being handled (None when it had none).
    body_json: Any = None

    def _body_params(self, body: str, content_type: str) -> dict[str, str]:
        """Parameters a request body carries (form fields; a JSON body carries none here)."""
        if body and content_type != "application/json":
            return dict(parse_qsl(body, keep_blank_values=True))
        return {}

    def _error_payload(
        self, code: int | str, msg: str, status: int, error: ApiError | None = None
    ) -> tuple[Any, int]:
        """The venue's error body and HTTP status for ``code`` / ``msg`` (``error``: the
        refusal raised, when there was one)."""
        return {"code": code, "msg": msg}, status

    def _authenticate(
        self, request: web.Request, raw_query: str, body: str, params: Mapping[str, str]
    ) -> None:
        """Check a signed request the way the venue does (raise ``ApiError``)."""
        raise ApiError(-1000, "emulator: no venue")

    def _authenticate_api_key(self, request: web.Request) -> None:
        """Check the API key of a key-only route (raise ``ApiError``)."""
        raise ApiError(-1000, "emulator: no venue")

    def _after_change(self) -> None:
        """Called after every request, price and control action: the venue pushes what changed
        to its user-data streams."""

    def _apply_fault(self, fault: Fault) -> None:
        """Apply a fault of ``IMMEDIATE_FAULTS`` now (the venue's streams)."""

    async def _private_ws(self, request: web.Request) -> web.StreamResponse:
        """The venue's user-data stream (``/private/ws``); none by default."""
        raise web.HTTPNotFound()

    def emit_adl(self, symbol: str, price: float, amount: float | None = None) -> dict[str, Any]:
        """The exchange auto-deleverages the position of ``symbol`` at ``price``."""
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        fill = self.core.auto_deleverage(symbol, price, amount)
        self._after_change()
        return fill.to_dict()

    def _state_extra(self) -> dict[str, Any]:
        """What the venue adds to ``GET /_control/state``."""
        return {}

    def client_ids(self) -> dict[str, list[str]]:
        """Every client order id the emulator accepted and the order ids that used it."""
        return {}

    def orders(self) -> list[dict[str, Any]]:
        """Every order the core holds (ccxt dicts, with the venue's ids and client ids)."""
        return []

    def _publish_liquidation(
        self, market_id: str, side: str, amount: float, price: float, ts: int
    ) -> None:
        """Push a forced-liquidation event to the venue's streams."""

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

    def inject(self, fault: Fault) -> Fault:
        """Queue a fault; returns it (its ``hits`` counts matches). A fault of
        ``IMMEDIATE_FAULTS`` is applied at once instead (``hits`` 1)."""
        self.faults.append(fault)
        if fault.kind in IMMEDIATE_FAULTS:
            fault.hits += 1
            fault.times = 0
            self._apply_fault(fault)
        return fault

    def set_price(
        self, symbol: str, last: float, mark: float | None = None, *, gap: bool = False
    ) -> None:
        """A new last (and mark) price: fills, triggers and liquidations run; streams are fed.
        ``gap``: the market jumped there without trading in between (a crossed stop fills at
        this price, not at its trigger)."""
        now = max(self.now_ms(), self.core.now_ms)
        self.core.on_price(symbol, float(last), now, None if mark is None else float(mark), gap)
        self._on_price(symbol, now)
        self._after_change()

    def _on_price(self, symbol: str, now: int) -> None:
        """The venue's stream events after a price (mark updates, liquidations)."""

    def open_external_position(self, symbol: str, side: str, amount: float) -> dict[str, Any]:
        """A market order placed outside the bot (web UI, another program): no client id."""
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        order = self.core.create_order(symbol, "market", side, amount, None, {"tag": "external"})
        self._after_change()
        return order

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

    async def _http(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info.get("tail", "")
        method = request.method
        body = await request.text() if request.can_read_body else ""
        raw_query = request.query_string
        params: dict[str, str] = dict(parse_qsl(raw_query, keep_blank_values=True))
        self.body_json = None
        params.update(self._body_params(body, request.content_type))
        shown = {k: v for k, v in params.items() if k != "signature"}
        if path.startswith("/_control/"):
            return await self._control(path, method, request, body)
        fault = None
        try:
            route = self.routes.get((method, path))
            if route is None:
                raise ApiError(-1000, f"emulator: no endpoint {method} {path}", 404)
            name, signed = route
            if signed:
                self._authenticate(request, raw_query, body, params)
            elif (method, path) in self.api_key_routes:
                self._authenticate_api_key(request)
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
            payload, status = self._error_payload(err.code, err.msg, err.status, err)
            self._after_change()
            return web.json_response(payload, status=status)
        self._after_change()
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
        code: int | str
        if fault.kind == "rate_limit":
            status = 429
            code, msg = self.rate_limit_error
            headers = {"Retry-After": str(fault.retry_after_s)}
        elif fault.kind == "reject":
            status, code, msg, headers = 400, fault.code, fault.msg, {}
        else:
            status, code, msg, headers = fault.status, fault.code, fault.msg, {}
        self.requests.append(RequestRecord(method, path, dict(shown), status))
        payload, status = self._error_payload(code, msg, status)
        return web.json_response(payload, status=status, headers=headers)

    async def _control(
        self, path: str, method: str, request: web.Request, body: str
    ) -> web.StreamResponse:
        try:
            data: dict[str, Any] = json.loads(body) if body else {}
            if method == "POST" and path == "/_control/price":
                self.set_price(
                    str(data["symbol"]),
                    float(data["last"]),
                    data.get("mark"),
                    gap=bool(data.get("gap", False)),
                )
                return web.json_response({"ok": True, "mark": self.core.mark_price(data["symbol"])})
            if method == "POST" and path == "/_control/fault":
                fault = self.inject(Fault(**data))
                return web.json_response({"ok": True, "kind": fault.kind})
            if method == "POST" and path == "/_control/position":
                order = self.open_external_position(
                    str(data["symbol"]), str(data["side"]), float(data["amount"])
                )
                return web.json_response({"ok": True, "order": order["id"]})
            if method == "POST" and path == "/_control/adl":
                amount = data.get("amount")
                fill = self.emit_adl(
                    str(data["symbol"]),
                    float(data["price"]),
                    None if amount is None else float(amount),
                )
                return web.json_response({"ok": True, "fill": fill})
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
        """The account for an audit over HTTP (``GET /_control/state``).

        Wallet and equity; every position with ``stop`` (the trigger of its live stop, None
        when it has none); every order ever placed with its client id and status; open orders;
        the exchange's liquidations.
        """
        core = self.core
        positions = [
            {**p, "stop": p.get("stopLossPrice"), "take_profit": p.get("takeProfitPrice")}
            for p in core.positions()
        ]
        orders = [
            {
                key: o.get(key)
                for key in (
                    "id",
                    "clientOrderId",
                    "symbol",
                    "status",
                    "side",
                    "type",
                    "amount",
                    "filled",
                    "average",
                    "triggerPrice",
                    "reduceOnly",
                    "timestamp",
                )
            }
            for o in self.orders()
        ]
        return {
            "wallet_balance": core.wallet_balance,
            "equity": core.equity(),
            "positions": positions,
            "orders": orders,
            "open_orders": core.open_orders(),
            "liquidations": [e.to_dict() for e in core.liquidations],
            **self._state_extra(),
        }

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if request.match_info.get("category") == "private":
            return await self._private_ws(request)
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
