"""Assemble and run one bot process: paper on live market data, or live trading.

``run_bot`` takes the state dir's lock (one bot per state dir: a second exits 2 naming the pid
that holds it), opens the state store and proves it can write (a full disk exits 2 with one
line), restores guard counters and halts, builds the exchange
(``PaperExchange`` restored from the store's paper snapshot, or ``LiveExchange`` after the
preflight checks passed: ``start_gate``, nothing is sent otherwise), the executor,
the strategy, the ``Engine`` and its ``PriceFeed`` (public market data: ccxt streams with a
polling fallback), starts the scheduled jobs on an ``AsyncIOScheduler``, serves the status page
and metrics on their own thread (``bot.ops.http``: no HTTP load slows trading), then waits for a
signal: SIGTERM/SIGINT stop it (entries stopped, resting entries cancelled, stops left in place
or everything closed with ``shutdown.flatten``, state flushed, within 10 s), SIGHUP re-reads the
configuration and swaps the guard parameters if the new file validates (else the error is
logged and the old parameters kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from bot.exchange.paper import (
    DurablePaperExchange,
    PaperSetupError,
    paper_exchange,
    save_paper,
)
from bot.ops.http import HttpThread, Published
from bot.ops.metrics import Metrics, TimedOrderStore
from bot.ops.notify import Notifier, build_notifier
from bot.ops.observe import Observer, install, uninstall
from bot.settings import ConfigError, Settings
from bot.state.heartbeat import HealthLimits
from bot.state.lock import LockHeld, StateLock
from bot.state.safe import WRITE_ERRORS, SafeStore
from bot.state.store import FILENAME as STORE_FILE
from bot.state.store import Store
from bot.strategies import load_strategy
from bot.trading.bars import timeframe_ms
from bot.trading.engine import Engine
from bot.trading.jobs import LiveScheduler, job_specs, job_triggers
from bot.trading.recorder import Recorder
from guards import GuardEngine, GuardState

log = structlog.get_logger("runner")

#: Seconds for the engine's part of a shutdown (the feed gets 2 s and the notifier 1.5 s more,
#: so a SIGTERM exits within 10 s).
SHUTDOWN_BUDGET_S = 6.0
#: What opening a store on an unwritable or damaged state dir raises.
OPEN_ERRORS: tuple[type[BaseException], ...] = (*WRITE_ERRORS, sqlite3.DatabaseError)
#: Seconds between two REST polls of the fills when the exchange streams none.
FILLS_POLL_S = 10.0
#: Seconds between two snapshots published to the HTTP thread.
PUBLISH_S = 1.0


class RunError(Exception):
    """The bot cannot start (bad state store, unknown symbol, ...): one readable message, and
    the exit code ``guardbot run`` ends with (2: the state dir is taken or cannot be written)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class PreflightRefused(RunError):
    """``run --live`` ran the preflight checks and one failed: nothing was sent (exit 2)."""

    def __init__(self, report: Any) -> None:
        failed = ", ".join(c.name for c in report.checks if c.status == "fail")
        super().__init__(
            f"preflight FAILED ({failed}): guardbot refuses to trade until it passes; "
            "no order was sent",
            code=2,
        )
        self.report = report


async def start_gate(exchange: Any, settings: Settings) -> None:
    """Live mode: the preflight checks before anything is set up or sent; a failure (position
    mode, multi-assets with isolated margin, key permissions, clock drift, leverage above the
    cap, ...) raises ``PreflightRefused`` carrying the report ``guardbot preflight`` prints."""
    from bot.ops.preflight import run_preflight

    report = await run_preflight(exchange, settings)
    failed = [c.name for c in report.checks if c.status == "fail"]
    if failed:
        log.error("preflight_refused", failed=failed)
        raise PreflightRefused(report)
    log.info("preflight_passed", warnings=[c.name for c in report.checks if c.status == "warn"])


def open_state(state_dir: Path) -> tuple[StateLock, Store]:
    """Take the state dir's lock, open the store and prove it can write (``RunError`` code 2
    when another bot holds the dir or it cannot be written)."""
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except LockHeld as exc:
        raise RunError(str(exc), code=2) from None
    except OSError as exc:
        raise RunError(f"state dir {state_dir} cannot be used: {exc}", code=2) from None
    path = Path(state_dir) / STORE_FILE
    fresh = not path.exists()
    try:
        store = Store.open(state_dir)
    except OPEN_ERRORS as exc:
        _forget(path, fresh)
        lock.release()
        raise RunError(f"state dir {state_dir} cannot be written: {exc}", code=2) from None
    except BaseException:
        lock.release()
        raise
    try:
        SafeStore(store).probe()
    except WRITE_ERRORS as exc:
        store.close()
        _forget(path, fresh)
        lock.release()
        raise RunError(f"state dir {state_dir} cannot be written: {exc}", code=2) from None
    return lock, store


def _forget(path: Path, fresh: bool) -> None:
    """Remove a store this start created and could not write (a full disk): left behind, the
    empty file would be refused at the next start. An existing store is never touched."""
    if not fresh:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            Path(f"{path}{suffix}").unlink()


def restore_guard(settings: Settings, store: Store | SafeStore) -> GuardEngine:
    """The guard engine with the counters and halts of the last run (never a reset halt)."""
    data = store.load_guard_state()
    state = GuardState.from_dict(data) if data else None
    return GuardEngine(settings.guards, state)


def market_source(settings: Settings) -> Any:
    """A keyless ccxt client for public market data (paper on live data)."""
    from bot.exchange.live import LiveExchange

    public = settings.exchange.model_copy(update={"api_key": None, "api_secret": None})
    return LiveExchange(
        public,
        cache_dir=settings.state.dir / "cache",
        markets_max_age_s=settings.exchange.markets_refresh_s,
        api_url=settings.exchange.api_url,
        ws_url=settings.exchange.ws_url,
        streams=settings.feed.kind == "stream",
    )


async def run_bot(
    settings: Settings,
    run_id: str,
    *,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
    reload_settings: Callable[[], Settings] | None = None,
    started: Callable[[Engine], None] | None = None,
) -> Engine:
    """Run until ``stop`` is set (or a SIGTERM/SIGINT); returns the stopped engine."""
    from ccxt.base.errors import AuthenticationError, NetworkError, PermissionDenied

    lock, raw = open_state(settings.state.dir)
    store = SafeStore(raw)
    try:
        try:
            return await _run(
                settings, run_id, store, stop, install_signals, reload_settings, started
            )
        except PaperSetupError as exc:
            raise RunError(str(exc)) from None
        except NetworkError as exc:
            where = settings.exchange.api_url or settings.exchange.id
            raise RunError(f"cannot reach the exchange ({where}): {type(exc).__name__}") from None
        except (AuthenticationError, PermissionDenied) as exc:
            raise RunError(f"the exchange refused the API key: {type(exc).__name__}") from None
    finally:
        raw.close()
        lock.release()


async def _run(
    settings: Settings,
    run_id: str,
    store: SafeStore,
    stop: asyncio.Event | None,
    install_signals: bool,
    reload_settings: Callable[[], Settings] | None,
    started: Callable[[Engine], None] | None,
) -> Engine:
    from bot.exchange.feed import PriceFeed
    from bot.exchange.live import LiveExchange
    from bot.trading.executor import Deadlines, Executor

    exchange: Any = None
    source: Any = None
    notifier: Notifier | None = None
    http: HttpThread | None = None
    publisher: asyncio.Task[None] | None = None
    fills_task: asyncio.Task[None] | None = None
    observing = False
    # Signals first: a SIGTERM during start-up becomes a clean shutdown once start-up is done.
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    holder: list[Engine] = []
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(
            signal.SIGHUP,
            lambda: asyncio.ensure_future(_reload(holder[0], reload_settings)) if holder else None,
        )
    try:
        guard = restore_guard(settings, store)
        if settings.mode == "paper":
            exchange = paper_exchange(settings, store)
            source = market_source(settings)
            await source.load_markets()
            markets = {s: exchange.core.market_rules(s) for s in settings.exchange.symbols}
        else:
            exchange = LiveExchange(
                settings.exchange,
                cache_dir=settings.state.dir / "cache",
                markets_max_age_s=settings.exchange.markets_refresh_s,
                api_url=settings.exchange.api_url,
                ws_url=settings.exchange.ws_url,
                streams=settings.feed.kind == "stream",
            )
            source = exchange
            await start_gate(exchange, settings)
            await exchange.load_markets()
            markets = exchange.market_rules(settings.exchange.symbols)
        missing = [s for s in settings.exchange.symbols if s not in markets]
        if missing:
            raise RunError(f"no market rules for {', '.join(missing)}")
        strategy = None
        if settings.strategy.path.strip().lower() != "none":
            strategy = load_strategy(settings.strategy.path, dict(settings.strategy.params))
        dumped = settings.model_dump(mode="json")
        store.write("run", lambda s: s.record_run(run_id, time.time(), settings.mode, dumped))
        metrics = Metrics(state_dir=settings.state.dir) if settings.metrics.enabled else None
        notifier = build_notifier(settings.notify)
        if metrics is not None or notifier is not None:
            install(Observer(metrics, notifier), level=settings.logging.level)
            observing = True
        if notifier is not None:
            await notifier.start()
        executor = Executor(
            exchange,
            store=TimedOrderStore(store, metrics) if metrics is not None else store,
            run_id=run_id,
            max_leverage=settings.guards.position_cap.max_leverage,
            deadlines=Deadlines(
                entry_s=settings.exchange.entry_deadline_s,
                lookup_s=settings.exchange.lookup_deadline_s,
                protect_s=settings.exchange.protect_deadline_s,
                read_s=settings.exchange.read_deadline_s,
            ),
        )
        await executor.prepare(
            settings.exchange.symbols, settings.exchange.margin_mode, settings.exchange.leverage
        )

        last_tick: dict[str, float] = {}

        def paper_tick(symbol: str, price: float, ts: float) -> None:
            if isinstance(exchange, DurablePaperExchange):
                # a price after a feed outage follows a gap: a stop it jumped fills there
                before = last_tick.get(symbol)
                gap = before is not None and ts - before > settings.guards.stale_price_s
                last_tick[symbol] = ts
                exchange.on_price(symbol, price, ts, gap=gap)

        engine = Engine(
            exchange=exchange,
            executor=executor,
            store=store,
            guard=guard,
            markets=markets,
            strategy=strategy,
            symbols=tuple(settings.exchange.symbols),
            timeframe_ms=timeframe_ms(settings.feed.timeframe),
            run_id=run_id,
            state_dir=settings.state.dir,
            on_price_hook=paper_tick if settings.mode == "paper" else None,
            heartbeat_s=settings.state.heartbeat_s,
            background=True,
            reach=[r for r in (getattr(x, "reach", None) for x in (exchange, source)) if r],
            limits=HealthLimits(
                stale_price_s=settings.guards.stale_price_s,
                sweep_s=settings.guards.sweep_s,
                unreachable_s=settings.health.unreachable_s,
                unprotected_s=settings.health.unprotected_s,
            ),
        )
        engine.seatbelt.act_on_existing = settings.seatbelt.act_on_existing
        feed = PriceFeed(
            source,
            settings.exchange.symbols,
            stale_price_s=settings.guards.stale_price_s,
            poll_s=settings.feed.poll_s,
            stream=settings.feed.kind == "stream",
            on_price=engine.on_price,
            on_liquidation=engine.on_liquidations,
        )
        recorder = Recorder(
            exchange,
            store,
            symbols=settings.exchange.symbols,
            on_close=engine.on_round_trip,
            # without the user-data stream the account's fills are polled: often on the paper
            # exchange (local), gently on a real one (Binance weighs userTrades at 5)
            poll_s=1.0 if settings.mode == "paper" else FILLS_POLL_S,
        )
        recorder.load()
        engine.recorder = recorder
        # the bot's own positions: on its record (fills, positions as last seen), not adopted
        executor.owned.update(recorder.held() | set(store.positions()))
        await engine.start()
        fills_task = asyncio.create_task(recorder.run(), name="fills")
        published = Published()
        published.publish(engine.snapshot())
        http = serve_http(settings, published, metrics)

        async def publish() -> None:
            while True:
                await asyncio.sleep(PUBLISH_S)
                try:
                    published.publish(engine.snapshot())
                except Exception as exc:  # a snapshot must never stop the bot
                    log.error("snapshot_failed", error=repr(exc))

        publisher = asyncio.create_task(publish(), name="publish")

        async def heartbeat() -> None:
            engine.catch_up()
            engine.heartbeat("running")
            save_paper(store, exchange)

        async def flatten() -> None:
            await engine.job_flatten()

        async def refresh() -> None:
            if isinstance(source, LiveExchange):
                await source.refresh_markets()

        async def reconcile_fills() -> None:
            await recorder.sync()
            await recorder.sync_orders()

        triggers = job_triggers(
            settings.guards,
            heartbeat_s=settings.state.heartbeat_s,
            markets_refresh_s=settings.exchange.markets_refresh_s,
            start=datetime.now(UTC),
        )
        scheduler = LiveScheduler(
            job_specs(
                triggers,
                {
                    "sweep": engine.job_sweep,
                    "flatten": flatten,
                    "daily_reset": engine.job_daily_reset,
                    "markets_refresh": refresh,
                    "heartbeat": heartbeat,
                    "equity_snapshot": engine.job_equity,
                    "reconcile_fills": reconcile_fills,
                },
            )
        )
        if metrics is not None:
            metrics.watch_jobs(scheduler)
        holder.append(engine)
        await feed.start()
        scheduler.start()
        engine.heartbeat("running")
        if started is not None:
            started(engine)
        log.info("bot_started", mode=settings.mode, symbols=list(settings.exchange.symbols))
        try:
            await stop.wait()
        finally:
            log.info("bot_stopping", flatten=settings.shutdown.flatten)
            scheduler.shutdown()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(feed.stop(), 2.0)
            try:
                await asyncio.wait_for(
                    engine.shutdown(settings.shutdown.flatten), SHUTDOWN_BUDGET_S
                )
            except TimeoutError:
                log.error("shutdown_timeout", budget_s=SHUTDOWN_BUDGET_S)
            save_paper(store, exchange)
        return engine
    finally:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        if publisher is not None:
            publisher.cancel()
        if fills_task is not None:
            fills_task.cancel()
        if http is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(http.stop)
        if notifier is not None:
            with contextlib.suppress(Exception):
                await notifier.stop(drain_s=1.5)
        if observing:
            uninstall(level=settings.logging.level)
        with contextlib.suppress(Exception):
            if source is not None and source is not exchange:
                await source.close()
        with contextlib.suppress(Exception):
            if exchange is not None:
                await exchange.close()


async def _reload(engine: Engine, reload_settings: Callable[[], Settings] | None) -> None:
    if reload_settings is None:
        log.warning("reload_unavailable")
        return
    try:
        new = reload_settings()
    except ConfigError as exc:
        log.error("config_reload_rejected", error=str(exc))
        return
    await engine.reload(new.guards)


def serve_http(
    settings: Settings, published: Published, metrics: Metrics | None
) -> HttpThread | None:
    """The status page and ``/metrics`` on their own thread (None when neither is enabled).

    A non-loopback bind without a token is served (the operator may have a proxy in front) but
    warned about: anyone who reaches the port sees the positions (or the metrics).
    """
    from bot.ops.status import make_app, published_health

    status, mconf = settings.status, settings.metrics
    if not status.enabled and metrics is None:
        return None
    http = HttpThread()
    if status.enabled:
        token = status.token.get_secret_value() if status.token is not None else None
        if token is None and not _loopback(status.host):
            log.warning("status_open_without_token", host=status.host, port=status.port)
        state_dir = settings.state.dir
        max_age = max(3 * settings.state.heartbeat_s, 5 * PUBLISH_S)

        def status_app() -> web.Application:
            reader = Store.open_reader(state_dir)
            app = make_app(
                published.get, reader, token=token, health=published_health(published, max_age)
            )

            async def close(_: web.Application) -> None:
                reader.close()

            app.on_cleanup.append(close)
            return app

        http.add(status_app, status.host, status.port)
    if metrics is not None:
        mtoken = mconf.token.get_secret_value() if mconf.token is not None else None
        if mtoken is None and not _loopback(mconf.host):
            log.warning("metrics_open_without_token", host=mconf.host, port=mconf.port)
        http.add(lambda: metrics.make_app(published.get, mtoken), mconf.host, mconf.port)
    http.start()
    return http


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def request_seatbelt_apply(state_dir: Path) -> None:
    """``guardbot seatbelt apply``: the running bot (or the next start) lets the seatbelt act
    on the positions it found at start."""
    from bot.trading.seatbelt import SEATBELT_KEY

    with Store.open(state_dir) as store:
        store.kv_set(SEATBELT_KEY, {"requested": time.time(), "applied": None})


def request_halt(state_dir: Path, halted: bool, reason: str) -> None:
    """``guardbot halt`` / ``resume``: a request the running bot applies at its next sweep."""
    from bot.trading.routines import CONTROL_KEY

    with Store.open(state_dir) as store:
        store.kv_set(CONTROL_KEY, {"halted": halted, "reason": reason, "ts": time.time()})
