"""What every part of the OKX emulator shares: signing, the demo header, shapes and contracts.

OKX v5 signs a private request with ``OK-ACCESS-SIGN`` = base64 HMAC-SHA256 of ``timestamp +
method + requestPath + body`` (``requestPath`` with its query string on a GET), with
``OK-ACCESS-KEY``, ``OK-ACCESS-PASSPHRASE`` and an ISO-8601 ``OK-ACCESS-TIMESTAMP`` (ms); a
timestamp more than 30 s off is 50102, a missing header 50103-50107, a wrong passphrase 50105,
an unknown key 50111, a malformed timestamp 50112, a bad signature 50113 (HTTP 401). Demo
trading ("simulated trading") is a separate environment: its keys work only with the header
``x-simulated-trading: 1`` and live keys only without it (50101 "APIKey does not match current
environment"); an emulator built with ``simulated=True`` is the demo one.

Every answer is ``{"code", "msg", "data"}``; an order endpoint's refusal is ``code "1"`` with
the reason per order in ``data[].sCode`` / ``sMsg`` (HTTP 200).

Amounts on the wire are **contracts** (``ctVal`` base units each, from the bundled instrument
record); the paper core counts base units. Margin mode is per order (``tdMode``) and leverage
per instrument and margin mode: the emulator keeps both and sets the core's symbol to the
order's mode while no position is open (an isolated and a cross position on one instrument at
once, which OKX allows, are not emulated: 51000). Long/short position mode can be switched on
but not traded in (guardbot trades net mode).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from aiohttp import web

from bot.emulator.binance.shapes import _s
from bot.emulator.bybit.base import flat
from bot.emulator.server import ApiError, EmulatorServer
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket
from paper.venues import instrument

TIMESTAMP_TOLERANCE_MS: Final = 30_000
#: OKX's codes whose answers carry HTTP 401.
_AUTH_CODES: Final = frozenset(
    {"50101", "50102", "50103", "50104", "50105", "50106", "50107", "50111", "50112", "50113"}
)


def num(x: float | int | None) -> str:
    """A number as OKX writes it: a decimal string ("" for None)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return _s(round(float(x), 10))


class OrderError(ApiError):
    """A refusal of one order: ``code "1"`` with ``sCode`` / ``sMsg`` in ``data``."""

    def __init__(self, s_code: str, s_msg: str, ids: Mapping[str, str] | None = None) -> None:
        super().__init__("1", s_msg, 200)
        self.s_code = s_code
        self.ids = dict(ids or {})


class OkxBase(EmulatorServer):
    """State shared by the OKX emulator's parts."""

    rate_limit_error = ("50011", "Too Many Requests")

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        passphrase: str,
        core: PaperCore | None = None,
        config: PaperConfig | None = None,
        symbols: Iterable[str] | None = None,
        balance: float | None = None,
        clock: Callable[[], float] | None = None,
        simulated: bool = False,
        long_short_mode: bool = False,
    ) -> None:
        extra = {} if clock is None else {"clock": clock}
        cfg = config if config is not None else PaperConfig(liquidation_profile="okx")
        super().__init__(
            api_key=api_key,
            api_secret=api_secret,
            core=core,
            config=cfg,
            symbols=symbols,
            balance=balance,
            **extra,
        )
        self.passphrase = passphrase
        self.simulated = simulated
        self.long_short_mode = long_short_mode
        self._by_id: dict[str, PaperMarket] = {}
        self._ct: dict[str, Decimal] = {}
        #: Leverage per (symbol, margin mode), as OKX keeps it.
        self.leverages: dict[tuple[str, str], float] = {}
        for s in self.core.symbols:
            m = self.core.market(s)
            self._by_id[m.id] = m
            try:
                self._ct[s] = Decimal(str(instrument("okx", s)["ctVal"]))
            except KeyError:
                self._ct[s] = Decimal(1)
            for mode in ("isolated", "cross"):
                self.leverages[(s, mode)] = self.core.leverage(s)
        #: Client ids (clOrdId / algoClOrdId) by order id and back.
        self._cl_by_oid: dict[str, str] = {}
        self._oid_by_cl: dict[str, str] = {}
        #: Algo order records: the request fields the core does not keep.
        self._algos: dict[str, dict[str, str]] = {}
        self._modes: dict[str, str] = {}
        self._overlay: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------------ plumbing

    def _body_params(self, body: str, content_type: str) -> dict[str, str]:
        if not body:
            return {}
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError("50002", "Invalid JSON body") from None
        self.body_json = data
        first = data[0] if isinstance(data, list) and data else data
        if not isinstance(first, dict):
            return {}
        return {str(k): flat(v) for k, v in first.items()}

    def _error_payload(
        self, code: int | str, msg: str, status: int, error: ApiError | None = None
    ) -> tuple[Any, int]:
        text = str(code)
        if isinstance(error, OrderError):
            row = {"sCode": error.s_code, "sMsg": error.msg, "ts": str(self.now_ms())}
            row.update(error.ids)
            return {"code": "1", "msg": "All operations failed", "data": [row]}, 200
        if text in _AUTH_CODES:
            status = 401
        elif status not in (404, 429) and status < 500:
            status = 200
        return {"code": text, "msg": msg, "data": []}, status

    def ok(self, data: list[Any]) -> dict[str, Any]:
        return {"code": "0", "msg": "", "data": data}

    def _authenticate(
        self, request: web.Request, raw_query: str, body: str, params: Mapping[str, str]
    ) -> None:
        headers = request.headers
        key = headers.get("OK-ACCESS-KEY")
        if not key:
            raise ApiError("50103", 'Request header "OK-ACCESS-KEY" cannot be empty.')
        passphrase = headers.get("OK-ACCESS-PASSPHRASE")
        if not passphrase:
            raise ApiError("50104", 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.')
        signature = headers.get("OK-ACCESS-SIGN")
        if not signature:
            raise ApiError("50106", 'Request header "OK-ACCESS-SIGN" cannot be empty.')
        stamp = headers.get("OK-ACCESS-TIMESTAMP")
        if not stamp:
            raise ApiError("50107", 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.')
        if not hmac.compare_digest(key, self.api_key):
            raise ApiError("50111", "Invalid OK-ACCESS-KEY.")
        demo = headers.get("x-simulated-trading") == "1"
        if demo != self.simulated:
            raise ApiError("50101", "APIKey does not match current environment.")
        if not hmac.compare_digest(passphrase, self.passphrase):
            raise ApiError("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
        try:
            ts = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            raise ApiError("50112", "Invalid OK-ACCESS-TIMESTAMP.") from None
        raw = request.rel_url.raw_query_string  # as signed: still percent-encoded
        path = request.rel_url.raw_path + (f"?{raw}" if raw else "")
        payload = stamp + request.method + path + body
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), signature):
            raise ApiError("50113", "Invalid Sign")
        if abs(ts.timestamp() * 1000 - self.now_ms()) > TIMESTAMP_TOLERANCE_MS:
            raise ApiError("50102", "Timestamp request expired.")

    # ------------------------------------------------------------------ contracts and markets

    def _market(self, inst_id: str | None) -> PaperMarket:
        if not inst_id:
            raise OrderError("51000", "Parameter instId error")
        market = self._by_id.get(inst_id)
        if market is None:
            raise OrderError("51001", "Instrument ID does not exist.")
        return market

    def to_base(self, symbol: str, contracts: float | str | Decimal) -> float:
        return float(Decimal(str(contracts)) * self._ct[symbol])

    def to_contracts(self, symbol: str, amount: float | None) -> str:
        if amount is None:
            return ""
        return num(float(Decimal(repr(float(amount))) / self._ct[symbol]))

    def lot(self, symbol: str) -> Decimal:
        """One lot in contracts (``lotSz``)."""
        try:
            return Decimal(str(instrument("okx", symbol)["lotSz"]))
        except KeyError:
            return Decimal(repr(self.core.market(symbol).rules.amount_step))

    def _register(self, oid: str, cl: str) -> None:
        if cl:
            self._cl_by_oid[oid] = cl
            self._oid_by_cl[cl] = oid

    @staticmethod
    def iso_ms(ts_ms: int) -> str:
        return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
