"""Alerts: what is worth telling a person, and delivering it without ever blocking trading.

``Notifier.notify(alert)`` is synchronous and O(1): it puts the alert on one bounded queue per
sink (when a queue is full the oldest alert is dropped and counted) and returns. One background
task per sink delivers: ``WebhookSink`` POSTs the alert as JSON to a URL, ``TelegramSink`` sends
it as plain text through the Bot API (``{api_url}/bot{token}/sendMessage``; the token is
registered with the log redactor and never logged). A failed delivery (connection error, time-out,
HTTP 5xx or 429) is retried with exponential backoff and jitter up to ``max_attempts``; any other
HTTP status gives up at once.

Refused entries are not sent one by one: ``Notifier.refused`` counts them per (code, symbol) and
one digest alert goes out per ``refusal_digest_s``. An alert identical to one sent less than
``repeat_s`` (60 s) ago is suppressed and counted, so a failure repeated on every request does not
flood the channel.

Log events → alerts (``alert_from_event``; ``bot.ops.observe`` feeds it every structlog event):

- ``guard_decision`` with ``outcome=reject`` → the ``entries_refused`` digest (info)
- ``guard_action`` ``kind=close`` → ``guard_close`` (warning)
- ``guard_action`` ``kind=reduce`` and ``seatbelt_cut`` → ``guard_reduce`` (warning)
- ``guard_action`` ``kind=place_stop`` → ``stop_reattached`` (warning)
- ``guard_action`` ``kind=halt``, code ``daily_loss_limit`` → ``daily_loss_halt`` (critical)
- ``guard_action`` ``kind=halt``, any other code → ``halt`` (critical)
- ``kill_switch_on`` → ``kill_switch_on`` (critical); ``kill_switch_off`` → ``resume`` (warning)
- ``exchange_auth_failed`` → ``auth_failed`` (critical)
- ``position_without_stop`` → ``position_without_stop`` (critical)
- ``position_adopted`` with ``stop=None`` → ``position_without_stop`` (warning)
- ``not_flat_after_flatten`` → ``not_flat`` (critical)
- ``bot_started`` → ``process_start``; ``engine_stopped`` → ``process_stop`` (info)
- any other event logged with ``alert=True`` (``naked_position_closed``, ``close_failed``,
  ...) → the event name (critical; warning if logged below error)

A guard action whose ``result`` starts with ``failed`` is raised to critical.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp
import structlog

from bot.exchange.retry import Backoff, RetryPolicy
from bot.ops.logging import REDACTOR
from bot.settings import NotifySettings

log = structlog.get_logger("notify")

Severity = Literal["info", "warning", "critical"]
Sleep = Callable[[float], Awaitable[None]]

TELEGRAM_MAX_TEXT = 4000
#: Event keys that are log plumbing, not alert content.
_PLUMBING = frozenset({"event", "level", "timestamp", "alert", "logger", "logger_name"})


@dataclass(frozen=True)
class Alert:
    """One message for a person: a stable ``kind``, a severity, a title and details."""

    kind: str
    severity: Severity
    title: str
    text: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)
    ts: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": "guardbot",
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "text": self.text,
            "ts": self.ts,
            "fields": dict(self.fields),
        }

    def to_text(self) -> str:
        lines = [f"[{self.severity.upper()}] {self.title}"]
        if self.text:
            lines.append(self.text)
        lines.extend(f"{key}: {value}" for key, value in self.fields.items() if key != "reason")
        return "\n".join(lines)


# ---------------------------------------------------------------------- events → alerts


def _severity_of(event: Mapping[str, Any]) -> Severity:
    return "critical" if str(event.get("level", "critical")) in ("critical", "error") else "warning"


def alert_from_event(event: Mapping[str, Any], now: float) -> Alert | None:
    """The alert a structlog event dict calls for, if any (see the module docstring).

    Refused decisions are not handled here: they go to ``Notifier.refused`` (the digest).
    """
    name = str(event.get("event", ""))
    fields = {k: v for k, v in event.items() if k not in _PLUMBING and v is not None}
    symbol = event.get("symbol")
    where = f" {symbol}" if symbol else ""
    reason = str(event.get("reason") or event.get("error") or "")
    kind: str
    severity: Severity
    if name == "guard_action":
        action = event.get("kind")
        rule = event.get("rule")
        if action == "close":
            kind, severity, title = "guard_close", "warning", f"guard closed{where} ({rule})"
        elif action == "reduce":
            kind, severity, title = "guard_reduce", "warning", f"guard reduced{where} ({rule})"
        elif action == "place_stop":
            kind, severity, title = "stop_reattached", "warning", f"stop re-attached{where}"
        elif action == "halt" and event.get("code") == "daily_loss_limit":
            kind, severity, title = "daily_loss_halt", "critical", "daily loss halt"
        elif action == "halt":
            kind, severity, title = "halt", "critical", f"entries halted ({event.get('code')})"
        else:
            return None
        if str(event.get("result", "")).startswith("failed"):
            severity, title = "critical", f"{title}: FAILED"
    elif name == "seatbelt_cut":
        kind, severity, title = "guard_reduce", "warning", f"seatbelt cut a manual position{where}"
    elif name == "kill_switch_on":
        kind, severity, title = "kill_switch_on", "critical", "kill switch on: positions closed"
    elif name == "kill_switch_off":
        kind, severity, title = "resume", "warning", "kill switch off: entries resumed"
    elif name == "exchange_auth_failed":
        kind, severity, title = "auth_failed", "critical", "exchange authentication failed"
        reason = str(event.get("consequence") or reason)
    elif name == "position_without_stop":
        kind, severity, title = "position_without_stop", "critical", f"no stop on{where}"
    elif name == "position_adopted" and "stop" in event and event.get("stop") is None:
        kind, severity, title = "position_without_stop", "warning", f"found{where} without a stop"
    elif name == "not_flat_after_flatten":
        kind, severity, title = "not_flat", "critical", "not flat after the flatten job"
    elif name == "bot_started":
        kind, severity, title = "process_start", "info", f"guardbot started ({event.get('mode')})"
    elif name == "engine_stopped":
        kind, severity, title = "process_stop", "info", "guardbot stopped"
    elif event.get("alert") is True:
        kind, severity, title = name, _severity_of(event), name.replace("_", " ") + where
    else:
        return None
    return Alert(kind, severity, title, reason, fields, now)


# ---------------------------------------------------------------------- sinks


class Sink(Protocol):
    """Somewhere alerts go. ``send`` returns True once delivered, False after giving up."""

    name: str

    async def send(self, alert: Alert) -> bool: ...

    async def close(self) -> None: ...


class _Status(Exception):
    """An HTTP answer that is not a success (kept apart so no URL ends up in a message)."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status == 429


class HttpSink:
    """POST a JSON body per alert, retried with exponential backoff and jitter."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        base_s: float = 0.5,
        max_delay_s: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._url = url
        self.timeout_s = timeout_s
        self.policy = RetryPolicy(
            attempts=max_attempts, base_s=base_s, max_delay_s=max_delay_s, budget_s=86_400.0
        )
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._session: aiohttp.ClientSession | None = None

    def payload(self, alert: Alert) -> dict[str, Any]:
        return alert.to_json()

    def _describe(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"

    async def _post(self, body: bytes) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        async with self._session.post(
            self._url, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            if resp.status >= 300:
                raise _Status(resp.status, _retry_after(resp.headers.get("Retry-After")))
            await resp.read()

    async def send(self, alert: Alert) -> bool:
        body = json.dumps(self.payload(alert), default=str).encode()
        backoff = Backoff(
            self.policy,
            sleep=self._sleep,
            rng=self._rng,
            retry_after=lambda exc: getattr(exc, "retry_after", None),
        )
        while True:
            try:
                await self._post(body)
                return True
            except (aiohttp.ClientError, TimeoutError, _Status) as exc:
                final = isinstance(exc, _Status) and not exc.retryable
                attempt = backoff.retries + 1
                if final or not await backoff.wait(exc):
                    log.error(
                        "notify_failed",
                        sink=self.name,
                        kind=alert.kind,
                        attempts=attempt,
                        error=self._describe(exc),
                    )
                    return False
                log.warning(
                    "notify_retry", sink=self.name, attempt=attempt, error=self._describe(exc)
                )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _retry_after(value: str | None) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


class WebhookSink(HttpSink):
    """A generic webhook: each alert is POSTed as ``Alert.to_json()``."""

    name = "webhook"


class TelegramSink(HttpSink):
    """Telegram Bot API ``sendMessage`` with the alert as plain text."""

    name = "telegram"

    def __init__(
        self,
        token: str,
        chat_id: str,
        api_url: str = "https://api.telegram.org",
        **kwargs: Any,
    ) -> None:
        REDACTOR.add([token])  # whatever a library puts in a message, the logs never show it
        super().__init__(f"{api_url.rstrip('/')}/bot{token}/sendMessage", **kwargs)
        self._token = token
        self.chat_id = chat_id

    def payload(self, alert: Alert) -> dict[str, Any]:
        text = alert.to_text()
        if len(text) > TELEGRAM_MAX_TEXT:
            text = text[: TELEGRAM_MAX_TEXT - 1] + "…"
        return {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True}

    def _describe(self, exc: BaseException) -> str:
        return super()._describe(exc).replace(self._token, "**********")


# ---------------------------------------------------------------------- the notifier


class _Lane:
    """One sink's bounded queue and delivery counters."""

    def __init__(self, sink: Sink, size: int) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(size)
        self.dropped = 0
        self.delivered = 0
        self.failed = 0

    def put(self, alert: Alert) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.queue.task_done()
            self.dropped += 1
        self.queue.put_nowait(alert)

    async def run(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                if await self.sink.send(alert):
                    self.delivered += 1
                else:
                    self.failed += 1
            except Exception as exc:  # a sink bug must not end deliveries
                self.failed += 1
                log.error("notify_sink_error", sink=self.sink.name, error=type(exc).__name__)
            finally:
                self.queue.task_done()


class Notifier:
    """Fans alerts out to sinks in the background; see the module docstring."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        queue_size: int = 1000,
        digest_s: float = 300.0,
        repeat_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lanes = [_Lane(s, queue_size) for s in sinks]
        self.digest_s = digest_s
        self.repeat_s = repeat_s
        self.clock = clock
        #: Alerts not sent because the very same one went out less than ``repeat_s`` ago.
        self.suppressed = 0
        self._recent: dict[tuple[str, str, str], float] = {}
        #: Refused entries since the last digest: (code, symbol) → [count, last reason].
        self.refusals: dict[tuple[str, str], list[Any]] = {}
        self._refusals_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    @property
    def dropped(self) -> int:
        return sum(lane.dropped for lane in self.lanes)

    @property
    def delivered(self) -> int:
        return sum(lane.delivered for lane in self.lanes)

    @property
    def failed(self) -> int:
        return sum(lane.failed for lane in self.lanes)

    def notify(self, alert: Alert) -> None:
        """Queue ``alert`` for every sink; never blocks (a full queue drops its oldest).

        The same alert (kind, title and text) within ``repeat_s`` of the last one is counted
        in ``suppressed`` instead (e.g. every request failing on a revoked key).
        """
        now = self.clock()
        key = (alert.kind, alert.title, alert.text)
        last = self._recent.get(key)
        if last is not None and now - last < self.repeat_s:
            self.suppressed += 1
            return
        if len(self._recent) >= 256:
            self._recent = {k: t for k, t in self._recent.items() if now - t < self.repeat_s}
        self._recent[key] = now
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self._put, alert)
        else:
            self._put(alert)

    def _put(self, alert: Alert) -> None:
        for lane in self.lanes:
            lane.put(alert)

    def refused(self, symbol: str, code: str, reason: str = "") -> None:
        """Count one refused entry for the next digest."""
        if self._refusals_since is None:
            self._refusals_since = self.clock()
        entry = self.refusals.setdefault((code, symbol), [0, ""])
        entry[0] += 1
        entry[1] = reason

    def flush_digest(self) -> Alert | None:
        """Queue the digest of refused entries counted so far (None when there were none)."""
        if not self.refusals:
            return None
        now = self.clock()
        since = self._refusals_since if self._refusals_since is not None else now
        rows = sorted(self.refusals.items(), key=lambda kv: (-kv[1][0], kv[0]))
        total = sum(v[0] for _, v in rows)
        lines = [f"{code} {symbol}: {n} (last: {reason})" for (code, symbol), (n, reason) in rows]
        counts = [
            {"code": code, "symbol": symbol, "count": n, "last_reason": reason}
            for (code, symbol), (n, reason) in rows
        ]
        alert = Alert(
            "entries_refused",
            "info",
            f"{total} entries refused by the guards",
            "\n".join(lines),
            {"counts": counts, "since": since, "until": now, "total": total},
            now,
        )
        self.refusals = {}
        self._refusals_since = None
        self.notify(alert)
        return alert

    async def _digest_loop(self) -> None:
        while True:
            await asyncio.sleep(self.digest_s)
            self.flush_digest()

    async def start(self) -> None:
        """Start the delivery tasks and the digest timer on the running loop."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._tasks = [asyncio.create_task(lane.run()) for lane in self.lanes]
        self._tasks.append(asyncio.create_task(self._digest_loop()))

    async def stop(self, drain_s: float = 5.0) -> None:
        """Send the pending digest, wait up to ``drain_s`` for the queues, then stop."""
        self.flush_digest()
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(lane.queue.join() for lane in self.lanes)), drain_s
                )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._loop = None
        for lane in self.lanes:
            await lane.sink.close()


def build_notifier(settings: NotifySettings) -> Notifier | None:
    """The notifier ``[notify]`` asks for, or None when no sink is configured."""
    common: dict[str, Any] = {
        "timeout_s": settings.timeout_s,
        "max_attempts": settings.max_attempts,
    }
    sinks: list[Sink] = []
    if settings.webhook_url:
        sinks.append(WebhookSink(settings.webhook_url.get_secret_value(), **common))
    if settings.telegram_token is not None and settings.telegram_chat_id:
        sinks.append(
            TelegramSink(
                settings.telegram_token.get_secret_value(),
                settings.telegram_chat_id,
                settings.telegram_api_url,
                **common,
            )
        )
    if not sinks:
        return None
    return Notifier(sinks, queue_size=settings.queue_size, digest_s=settings.refusal_digest_s)
