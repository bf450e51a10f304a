"""Binance's user-data stream: the listen key and the private websocket it opens.

Listen key (security type USER_STREAM: the ``X-MBX-APIKEY`` header, no signature; -2014 /
-2015 like the signed endpoints): ``POST /fapi/v1/listenKey`` creates one, or returns the
account's active key and extends it; ``PUT`` extends the active key 60 minutes and returns it
(``{"listenKey": ...}``), -1125 "This listenKey does not exist." when there is none; ``DELETE``
invalidates it (``{}``) and closes its streams. A key not kept alive expires 60 minutes after
its creation or last keep-alive, on the emulator's clock (``clock`` and ``clock_skew_ms``):
its connected streams get ``{"e": "listenKeyExpired", "E": "<ms>", "listenKey": ...}`` (``E``
a string, as Binance's documented example has it) and then nothing more, though the socket
stays open (Binance: "not related to the websocket disconnection").

The stream is served where ccxt (4.5) and Binance's routed URLs put it: ``/private/ws`` with
``?listenKey=<key>`` (and optionally ``&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE``, a
``/``-separated filter), or ``/private/ws/<key>``. ccxt builds it from
``urls['api']['ws']['linear']`` (``.../ws`` becomes ``.../private/ws?listenKey=``), so
``bot.exchange.live.point_at`` reaches it unchanged. Binance retired the legacy
``/ws/<listenKey>`` for user data (2026-04-23): here, as there, that path is a market-stream
connection that carries no user data. A connection with an unknown or expired key is accepted
and stays silent. The ``drop_user_stream`` fault closes every user-data connection and answers
503 to new ones for ``refuse_s`` seconds. What the stream carries: ``bot.emulator.binance.events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import WSMsgType, web

from bot.emulator.binance.orders import BinanceOrders
from bot.emulator.server import ApiError, Fault, _Stream

#: A listen key lives 60 minutes after its creation or last keep-alive.
LISTEN_KEY_TTL_MS: Final = 60 * 60_000
#: How often the emulator looks whether the listen key has expired (seconds).
HOUSEKEEPING_S: Final = 0.5
_KEY_ALPHABET: Final = string.ascii_letters + string.digits


@dataclass
class _ListenKey:
    key: str
    expires_ms: int
    #: False once it expired or was deleted.
    valid: bool = True


class _UserStream(_Stream):
    """One user-data connection: its listen key and event filter (None: every event)."""

    def __init__(self, ws: web.WebSocketResponse, key: str, events: frozenset[str] | None) -> None:
        super().__init__(ws)
        self.key = key
        self.events = events


class BinanceUserData(BinanceOrders):
    """The listen key endpoints and the user-data websocket (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listen_key: _ListenKey | None = None
        self._user_streams: list[_UserStream] = []
        self._refuse_user_until_ms = 0
        self._housekeeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[bool]] = set()

    # -- listen key -----------------------------------------------------------------------------
    def _active_key(self) -> _ListenKey | None:
        """The account's listen key if it is still valid (expiring it when its time is up)."""
        self._check_listen_key()
        lk = self._listen_key
        return lk if lk is not None and lk.valid else None

    def _check_listen_key(self) -> None:
        lk = self._listen_key
        if lk is None or not lk.valid or self.now_ms() < lk.expires_ms:
            return
        lk.valid = False
        event = {"e": "listenKeyExpired", "E": str(self.now_ms()), "listenKey": lk.key}
        for stream in self._user_streams:
            if stream.key == lk.key:
                stream.queue.put_nowait(event)

    def ep_listen_key_new(self, params: dict[str, str], fault: Fault | None) -> Any:
        lk = self._active_key()
        if lk is None:
            key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(64))
            lk = self._listen_key = _ListenKey(key, 0)
        lk.expires_ms = self.now_ms() + LISTEN_KEY_TTL_MS
        return {"listenKey": lk.key}

    def ep_listen_key_keepalive(self, params: dict[str, str], fault: Fault | None) -> Any:
        lk = self._active_key()
        if lk is None:
            raise ApiError(-1125, "This listenKey does not exist.")
        lk.expires_ms = self.now_ms() + LISTEN_KEY_TTL_MS
        return {"listenKey": lk.key}

    def ep_listen_key_close(self, params: dict[str, str], fault: Fault | None) -> Any:
        lk = self._active_key()
        if lk is None:
            raise ApiError(-1125, "This listenKey does not exist.")
        lk.valid = False
        self._close_user_streams(s for s in self._user_streams if s.key == lk.key)
        return {}

    # -- the stream -----------------------------------------------------------------------------
    def _publish_user(self, events: Iterable[dict[str, Any]]) -> None:
        """Send ``events`` (in order) to the connections of the valid listen key."""
        lk = self._listen_key
        if lk is None or not lk.valid:
            return
        streams = [s for s in self._user_streams if s.key == lk.key and not s.ws.closed]
        if not streams:
            return
        for event in events:
            for stream in streams:
                if stream.events is None or event["e"] in stream.events:
                    stream.queue.put_nowait(event)

    async def _private_ws(self, request: web.Request) -> web.StreamResponse:
        refused_ms = self._refuse_user_until_ms - self.now_ms()
        if refused_ms > 0:
            raise web.HTTPServiceUnavailable(
                text="user data stream unavailable (injected fault)",
                headers={"Retry-After": str(max(1, -(-refused_ms // 1000)))},
            )
        key = request.match_info.get("stream") or request.query.get("listenKey", "")
        wanted = request.query.get("events")
        events = frozenset(e for e in wanted.split("/") if e) if wanted else None
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        stream = _UserStream(ws, key, events)
        self._user_streams.append(stream)
        writer = asyncio.ensure_future(stream.write_loop())
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError, AttributeError):
                    data = json.loads(msg.data)
                    stream.queue.put_nowait({"result": None, "id": data.get("id")})
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if stream in self._user_streams:
                self._user_streams.remove(stream)
        return ws

    def _close_user_streams(self, streams: Iterable[_UserStream]) -> None:
        chosen = list(streams)
        for stream in chosen:
            if stream in self._user_streams:
                self._user_streams.remove(stream)
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is connected
            loop = asyncio.get_running_loop()
            for stream in chosen:
                task = loop.create_task(stream.ws.close(code=1001, message=b"closed by the server"))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def _apply_fault(self, fault: Fault) -> None:
        if fault.kind == "drop_user_stream":
            self._refuse_user_until_ms = self.now_ms() + int(fault.refuse_s * 1000)
            self._close_user_streams(self._user_streams)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await super().start(host, port)
        self._housekeeper = asyncio.ensure_future(self._housekeeping())
        return url

    async def stop(self) -> None:
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
            self._housekeeper = None
        for stream in list(self._user_streams):
            await stream.close()
        await super().stop()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self._check_listen_key()

    def _state_extra(self) -> dict[str, Any]:
        lk = self._active_key()
        return {
            "listen_key": None if lk is None else {"expires_ms": lk.expires_ms},
            "user_streams": len(self._user_streams),
        }
