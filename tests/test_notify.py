"""Alerts: delivery to a local webhook receiver and a local fake Telegram API (retries after
5xx, giving up, never blocking the caller), the refused-entry digest, the event → alert mapping,
and the Telegram token kept out of every log line."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiohttp import web
from pydantic import SecretStr

from bot.ops.logging import MASK, configure_logging
from bot.ops.notify import (
    Alert,
    Notifier,
    TelegramSink,
    WebhookSink,
    alert_from_event,
    build_notifier,
)
from bot.settings import NotifySettings

BTC = "BTC/USDT:USDT"
WAIT_S = 5.0  # upper bound for things that happen in milliseconds


@dataclass
class Receiver:
    """A local HTTP server: answers ``fail_first`` requests with ``fail_status``, then 200."""

    fail_first: int = 0
    fail_status: int = 500
    hang: asyncio.Event | None = None
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    ok: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        self.bodies.append(await request.json())
        self.arrived.set()
        if self.hang is not None:
            await self.hang.wait()
        if len(self.bodies) <= self.fail_first:
            self.statuses.append(self.fail_status)
            return web.json_response({"ok": False}, status=self.fail_status)
        self.statuses.append(200)
        self.ok.set()
        return web.json_response({"ok": True, "result": {}})


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Receiver], Any]]:
    runners: list[web.AppRunner] = []

    async def start(receiver: Receiver) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        receiver.url = f"http://{host}:{port}"
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


def alert(title: str = "kill switch on", severity: Any = "critical") -> Alert:
    return Alert("kill_switch_on", severity, title, "going to bed", {"symbol": BTC}, 1_000.0)


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_webhook_retries_after_5xx_then_delivers(serve: Any) -> None:
    rx = await serve(Receiver(fail_first=2))
    sleep = FakeSleep()
    sink = WebhookSink(f"{rx.url}/hook", max_attempts=5, sleep=sleep, rng=random.Random(1))
    notifier = Notifier([sink])
    await notifier.start()
    try:
        notifier.notify(alert())
        await asyncio.wait_for(rx.ok.wait(), WAIT_S)
    finally:
        await notifier.stop()
    assert rx.statuses == [500, 500, 200]
    assert rx.paths == ["/hook"] * 3
    assert rx.bodies[0] == rx.bodies[1] == rx.bodies[2]
    body = rx.bodies[0]
    assert body["source"] == "guardbot"
    assert body["kind"] == "kill_switch_on" and body["severity"] == "critical"
    assert body["title"] == "kill switch on" and body["text"] == "going to bed"
    assert body["fields"] == {"symbol": BTC} and body["ts"] == 1_000.0
    assert notifier.delivered == 1 and notifier.failed == 0
    # two retries, exponential with equal jitter: base 0.5 s, factor 2, jitter 0.5 →
    # first wait in [0.25, 0.5], second in [0.5, 1.0]
    assert len(sleep.waits) == 2
    assert 0.25 <= sleep.waits[0] <= 0.5
    assert 0.5 <= sleep.waits[1] <= 1.0


async def test_webhook_gives_up_after_max_attempts(serve: Any) -> None:
    rx = await serve(Receiver(fail_first=100, fail_status=503))
    sink = WebhookSink(f"{rx.url}/hook", max_attempts=3, sleep=FakeSleep())
    assert await sink.send(alert()) is False
    await sink.close()
    assert rx.statuses == [503, 503, 503]


async def test_webhook_does_not_retry_a_client_error(serve: Any) -> None:
    rx = await serve(Receiver(fail_first=100, fail_status=400))
    sleep = FakeSleep()
    sink = WebhookSink(f"{rx.url}/hook", max_attempts=5, sleep=sleep)
    assert await sink.send(alert()) is False
    await sink.close()
    assert rx.statuses == [400] and sleep.waits == []


async def test_unreachable_webhook_is_retried_then_given_up() -> None:
    sleep = FakeSleep()
    sink = WebhookSink("http://127.0.0.1:1/hook", max_attempts=3, timeout_s=2.0, sleep=sleep)
    assert await sink.send(alert()) is False
    await sink.close()
    assert len(sleep.waits) == 2  # three attempts, two waits


async def test_notify_never_blocks_and_drops_the_oldest_when_full(serve: Any) -> None:
    release = asyncio.Event()
    rx = await serve(Receiver(hang=release))
    notifier = Notifier([WebhookSink(f"{rx.url}/hook", timeout_s=30.0)], queue_size=10)
    await notifier.start()
    try:
        notifier.notify(alert("a0"))
        await asyncio.wait_for(rx.arrived.wait(), WAIT_S)  # a0 is in flight, the receiver hangs
        # notify() is plain synchronous code: these 15 calls run with no await in between,
        # i.e. without the loop ever getting a chance to deliver anything
        for i in range(1, 16):
            notifier.notify(alert(f"a{i}"))
        lane = notifier.lanes[0]
        assert lane.queue.qsize() == 10
        assert notifier.dropped == 5  # a1..a5 made room for a11..a15
        release.set()
        await asyncio.wait_for(lane.queue.join(), WAIT_S)
    finally:
        await notifier.stop()
    assert [b["title"] for b in rx.bodies] == ["a0"] + [f"a{i}" for i in range(6, 16)]
    assert notifier.delivered == 11


@dataclass
class Recorder:
    """A sink that keeps what it is sent."""

    name: str = "recorder"
    alerts: list[Alert] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    async def send(self, alert: Alert) -> bool:
        self.alerts.append(alert)
        self.got.set()
        return True

    async def close(self) -> None:
        self.closed = True


async def test_refusals_are_aggregated_into_one_digest() -> None:
    sink = Recorder()
    clock = {"t": 1_000.0}
    notifier = Notifier([sink], digest_s=300.0, clock=lambda: clock["t"])
    for _ in range(3):
        notifier.refused(BTC, "stop_missing", "an opening order needs a stop-loss")
    clock["t"] = 1_100.0
    notifier.refused(BTC, "cooldown", "cooldown after a stop-out")
    notifier.refused("ETH/USDT:USDT", "stop_missing", "no stop")
    clock["t"] = 1_300.0
    digest = notifier.flush_digest()
    assert digest is not None
    assert digest.kind == "entries_refused" and digest.severity == "info"
    assert digest.fields["total"] == 5
    assert digest.fields["since"] == 1_000.0 and digest.fields["until"] == 1_300.0
    counts = {(c["code"], c["symbol"]): c["count"] for c in digest.fields["counts"]}
    assert counts == {
        ("stop_missing", BTC): 3,
        ("cooldown", BTC): 1,
        ("stop_missing", "ETH/USDT:USDT"): 1,
    }
    assert digest.text.splitlines()[0].startswith(f"stop_missing {BTC}: 3")
    assert notifier.flush_digest() is None  # counts were reset
    await notifier.start()
    await notifier.stop()
    assert [a.kind for a in sink.alerts] == ["entries_refused"] and sink.closed


async def test_digest_goes_out_on_its_timer() -> None:
    sink = Recorder()
    notifier = Notifier([sink], digest_s=0.02)
    await notifier.start()
    try:
        notifier.refused(BTC, "cap_leverage", "leverage 20 above the cap 5")
        await asyncio.wait_for(sink.got.wait(), WAIT_S)
    finally:
        await notifier.stop()
    assert len(sink.alerts) == 1
    assert sink.alerts[0].fields["counts"][0]["code"] == "cap_leverage"


TOKEN = "123456789:AAH-fake-telegram-token-for-tests_xyz"


async def test_telegram_sink_posts_plain_text_and_never_logs_the_token(serve: Any) -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    rx = await serve(Receiver(fail_first=1))
    sink = TelegramSink(TOKEN, "-100200300", rx.url, sleep=FakeSleep())
    notifier = Notifier([sink])
    await notifier.start()
    try:
        notifier.notify(alert())
        await asyncio.wait_for(rx.ok.wait(), WAIT_S)
        # a connection failure to an API URL holding the token, and a library message
        # quoting the full URL, both logged: the token must not show
        dead = TelegramSink(TOKEN, "-1", "http://127.0.0.1:1", max_attempts=2, sleep=FakeSleep())
        assert await dead.send(alert()) is False
        await dead.close()
        structlog.get_logger("x").warning("lib_error", url=f"{rx.url}/bot{TOKEN}/sendMessage")
    finally:
        await notifier.stop()
    assert rx.paths == [f"/bot{TOKEN}/sendMessage"] * 2
    body = rx.bodies[-1]
    assert body["chat_id"] == "-100200300"
    assert body["text"].splitlines() == [
        "[CRITICAL] kill switch on",
        "going to bed",
        f"symbol: {BTC}",
    ]
    lines = out.getvalue().strip().splitlines()
    events = [json.loads(line) for line in lines]
    names = [e["event"] for e in events]
    assert "notify_retry" in names and "notify_failed" in names and "lib_error" in names
    assert all(TOKEN not in line for line in lines)
    assert MASK in events[names.index("lib_error")]["url"]


def test_telegram_text_is_capped() -> None:
    sink = TelegramSink(TOKEN, "1", "http://127.0.0.1:1")
    long = Alert("x", "info", "t", "y" * 10_000)
    assert len(sink.payload(long)["text"]) <= 4096  # Telegram's message limit


@pytest.mark.parametrize(
    ("event", "kind", "severity"),
    [
        (
            {"event": "guard_action", "kind": "close", "rule": "liquidation"},
            "guard_close",
            "warning",
        ),
        (
            {"event": "guard_action", "kind": "reduce", "rule": "liquidation"},
            "guard_reduce",
            "warning",
        ),
        (
            {"event": "seatbelt_cut", "symbol": BTC, "code": "cap_leverage"},
            "guard_reduce",
            "warning",
        ),
        (
            {"event": "guard_action", "kind": "place_stop", "rule": "stop_loss"},
            "stop_reattached",
            "warning",
        ),
        (
            {
                "event": "guard_action",
                "kind": "halt",
                "rule": "loss_limit",
                "code": "daily_loss_limit",
            },
            "daily_loss_halt",
            "critical",
        ),
        (
            {"event": "guard_action", "kind": "halt", "rule": "anti_top_up", "code": "stopouts"},
            "halt",
            "critical",
        ),
        (
            {
                "event": "guard_action",
                "kind": "close",
                "rule": "x",
                "result": "failed: NetworkError",
            },
            "guard_close",
            "critical",
        ),
        ({"event": "kill_switch_on", "reason": "bed"}, "kill_switch_on", "critical"),
        ({"event": "kill_switch_off"}, "resume", "warning"),
        (
            {"event": "exchange_auth_failed", "alert": True, "level": "critical"},
            "auth_failed",
            "critical",
        ),
        ({"event": "position_without_stop", "alert": True}, "position_without_stop", "critical"),
        (
            {"event": "position_adopted", "symbol": BTC, "stop": None},
            "position_without_stop",
            "warning",
        ),
        ({"event": "not_flat_after_flatten", "positions": [BTC]}, "not_flat", "critical"),
        ({"event": "bot_started", "mode": "paper"}, "process_start", "info"),
        ({"event": "engine_stopped", "flatten": False}, "process_stop", "info"),
        (
            {"event": "naked_position_closed", "alert": True, "level": "critical"},
            "naked_position_closed",
            "critical",
        ),
    ],
)
def test_events_map_to_alerts(event: dict[str, Any], kind: str, severity: str) -> None:
    got = alert_from_event(event, 5.0)
    assert got is not None
    assert (got.kind, got.severity, got.ts) == (kind, severity, 5.0)


@pytest.mark.parametrize(
    "event",
    [
        {"event": "guard_action", "kind": "cancel_entries", "rule": "no_overnight"},
        {"event": "position_adopted", "symbol": BTC, "stop": 59_000.0},
        {"event": "price_stale", "symbol": BTC},
        {"event": "notify_failed", "sink": "webhook"},
        {"event": "guard_decision", "outcome": "reject"},  # goes to the digest instead
    ],
)
def test_other_events_raise_no_alert(event: dict[str, Any]) -> None:
    assert alert_from_event(event, 0.0) is None


def test_build_notifier_from_settings() -> None:
    assert build_notifier(NotifySettings()) is None
    n = build_notifier(
        NotifySettings(
            webhook_url="http://127.0.0.1:9/x",
            telegram_token=SecretStr(TOKEN),
            telegram_chat_id="42",
            queue_size=20,
            refusal_digest_s=60,
            max_attempts=2,
        )
    )
    assert n is not None
    assert [lane.sink.name for lane in n.lanes] == ["webhook", "telegram"]
    assert n.digest_s == 60 and n.lanes[0].queue.maxsize == 20
    # a token without a chat id configures no Telegram sink
    assert build_notifier(NotifySettings(telegram_token=SecretStr(TOKEN))) is None


def test_a_repeated_alert_is_suppressed_for_repeat_s() -> None:
    clock = {"t": 0.0}
    notifier = Notifier([Recorder()], repeat_s=60.0, clock=lambda: clock["t"])
    auth = Alert("auth_failed", "critical", "exchange authentication failed", "check the key")
    notifier.notify(auth)
    clock["t"] = 59.0
    notifier.notify(auth)  # 59 s after the first: suppressed
    notifier.notify(alert("kill switch on"))  # a different alert goes through
    clock["t"] = 60.0
    notifier.notify(auth)  # 60 s after the first one sent: goes out again
    queued = list(notifier.lanes[0].queue._queue)  # type: ignore[attr-defined]
    assert [a.kind for a in queued] == ["auth_failed", "kill_switch_on", "auth_failed"]
    assert notifier.suppressed == 1
