"""HTTP load cannot starve trading: the sweep rate of a live-mode bot with and without a flood
of requests to its status page and ``/metrics``.

Starts the local exchange (``python -m bot.emulator``) and a live-mode bot against it (status
page with a token and ``/metrics`` both on, ``guards.sweep_s`` = 1, one open position so every
sweep has work), each in its own process; then from this process:

1. a quiet phase: the sweep job's completed runs (``guardbot_job_runs_total{job="sweep"}``) over
   ``--quiet`` seconds;
2. a load phase: ``--requests`` requests (default 8,000) at ``--concurrency`` (default 100) over
   the page, every ``/api/*`` route, ``/health`` and ``/metrics``, kept going for at least
   ``--min-load`` seconds; the sweep runs counted over it.

Prints the request rate, status codes, latency, and the sweep rate in both phases against the
configured 1/s, then as its last line one JSON object with ``sweep_ratio_under_load`` (target
≥ 0.9: sweeps keep at least 90 % of their configured rate). Run from the repository root:
``.venv/bin/python benchmarks/http_load.py``. Needs two free cores to be meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
KEY = "benchKey0123456789abcdefABCDEF"
SECRET = "benchSecret-9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"
TOKEN = "bench-status-token"
SYMBOL = "BTC/USDT:USDT"
ROUTES = (
    "/",
    "/app.js",
    "/api/status",
    "/api/decisions",
    "/api/actions",
    "/api/trades",
    "/api/equity",
    "/health",
)
RUNS = re.compile(r'^guardbot_job_runs_total\{job="sweep"\} ([0-9.e+]+)$', re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(tmp: Path, api: int, status: int, metrics: int) -> Path:
    path = tmp / "bench.toml"
    path.write_text(
        f"""
mode = "live"
[exchange]
symbols = ["{SYMBOL}"]
api_url = "http://127.0.0.1:{api}"
leverage = 3
[feed]
kind = "poll"
poll_s = 0.5
timeframe = "1h"
[strategy]
path = "bench_strategy:EnterOnce"
[guards]
sweep_s = 1
[guards.no_overnight]
enabled = false
[state]
dir = "{tmp / "state"}"
heartbeat_s = 1
[status]
enabled = true
port = {status}
[metrics]
enabled = true
port = {metrics}
""",
        encoding="utf-8",
    )
    (tmp / "bench_strategy.py").write_text(
        """
from bot.strategies.base import NO_INTENTS, BaseStrategy
from guards.types import OrderIntent


class EnterOnce(BaseStrategy):
    name = "bench_enter_once"
    entered = False

    def on_tick(self, symbol, ts_ms, price, position):
        if self.entered or position is not None:
            return NO_INTENTS
        self.entered = True
        return (OrderIntent(symbol, "long", 0.01, leverage=3, stop_price=price * 0.98),)
""",
        encoding="utf-8",
    )
    return path


async def sweep_runs(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url) as resp:
        text = await resp.text()
    found = RUNS.search(text)
    return float(found.group(1)) if found else 0.0


async def wait_healthy(session: aiohttp.ClientSession, url: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit(f"the bot never became healthy at {url}")


async def load(
    base: str, metrics_url: str, requests: int, concurrency: int, min_s: float
) -> dict[str, object]:
    codes: dict[int, int] = {}
    latencies: list[float] = []
    sent = 0
    start = time.monotonic()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(n: int) -> None:
            nonlocal sent
            i = n
            while sent < requests or time.monotonic() - start < min_s:
                sent += 1
                url = metrics_url if i % 5 == 0 else base + ROUTES[i % len(ROUTES)]
                i += concurrency
                t0 = time.monotonic()
                try:
                    async with session.get(url, headers=headers) as resp:
                        await resp.read()
                        codes[resp.status] = codes.get(resp.status, 0) + 1
                except (aiohttp.ClientError, TimeoutError):
                    codes[0] = codes.get(0, 0) + 1
                latencies.append(time.monotonic() - t0)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "requests": sent,
        "seconds": round(elapsed, 2),
        "rps": round(sent / elapsed, 1),
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--quiet", type=float, default=15.0, help="seconds of the quiet phase")
    parser.add_argument("--min-load", type=float, default=20.0, help="least seconds of load")
    args = parser.parse_args()
    api, status, metrics = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDBOT_")}
    env.update(
        GUARDBOT_EXCHANGE__API_KEY=KEY,
        GUARDBOT_EXCHANGE__API_SECRET=SECRET,
        GUARDBOT_STATUS__TOKEN=TOKEN,
        GUARDBOT_LIVE_CONFIRM="yes",
    )
    with tempfile.TemporaryDirectory(prefix="guardbot-http-") as folder:
        tmp = Path(folder)
        cfg = config(tmp, api, status, metrics)
        env["PYTHONPATH"] = os.pathsep.join([str(tmp), str(ROOT)])
        emulator = subprocess.Popen(
            [sys.executable, "-m", "bot.emulator", "--port", str(api), "--price",
             f"{SYMBOL}=60000"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        log = (tmp / "bot.log").open("wb")
        bot = subprocess.Popen(
            [sys.executable, "-c", "from bot.cli import main; main()", "run", "--config",
             str(cfg), "--log-level", "warning", "--log-format", "json"],
            cwd=tmp, env=env, stdout=log, stderr=log,
        )  # fmt: skip
        base = f"http://127.0.0.1:{status}"
        metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        try:
            async with aiohttp.ClientSession() as session:
                await wait_healthy(session, base + "/health")
                await asyncio.sleep(2.0)
                r0, t0 = await sweep_runs(session, metrics_url), time.monotonic()
                await asyncio.sleep(args.quiet)
                r1, t1 = await sweep_runs(session, metrics_url), time.monotonic()
            quiet_rate = (r1 - r0) / (t1 - t0)
            load_stats = await load(
                base, metrics_url, args.requests, args.concurrency, args.min_load
            )
            async with aiohttp.ClientSession() as session:
                r2, t2 = await sweep_runs(session, metrics_url), time.monotonic()
            load_rate = (r2 - r1) / (t2 - t1)
        finally:
            bot.terminate()
            bot.wait(15)
            emulator.terminate()
            emulator.wait(15)
            log.close()
    result = {
        "configured_sweeps_per_s": 1.0,
        "sweeps_per_s_quiet": round(quiet_rate, 3),
        "sweeps_per_s_under_load": round(load_rate, 3),
        "sweep_ratio_under_load": round(load_rate / 1.0, 3),
        **{f"load_{k}": v for k, v in load_stats.items()},
    }
    print(f"quiet:      {quiet_rate:.2f} sweeps/s (configured 1/s)")
    print(
        f"under load: {load_rate:.2f} sweeps/s while {load_stats['requests']} requests in "
        f"{load_stats['seconds']} s ({load_stats['rps']} req/s, codes {load_stats['codes']}, "
        f"p50 {load_stats['p50_ms']} ms, p99 {load_stats['p99_ms']} ms)"
    )
    print(f"ratio:      {load_rate:.2f} of the configured rate (target ≥ 0.9)")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
