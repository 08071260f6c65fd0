"""Hosted shoots against the BFL sandbox with 2 s simulated latency, the client's DEFAULT settings.

32 portraits on FLUX1.1 [pro]: the account allows 24 active tasks, so the ideal wall time
is ceil(32/24) x 2 s = 4 s. Then 8 on Kontext [max], which allows 6: ideal 2 x 2 s.
Prints the ratio to the ideal, the client's CPU time per request (steady state: one-time
imports are done before the clock starts), the polls per request the sandbox answered and the
most tasks it saw active at once. Each run starts a fresh sandbox on a new port, so the client
meets the model cold every time (the first batch of a process: one scout task learns the latency).
The sandbox runs in its own process, so the CPU time measured here is the client's alone.

With `--warm-state` each run is followed by a "warm" one: a fresh sandbox again (so nothing is
learnt in memory, as in a new process) and a client that starts from the latencies the cold run
saved in its studio state file (`latency.json`), as every CLI command after the first does.

    python bench/bench_hosted_concurrency.py [--requests 32] [--latency 2] [--repeat 1] [--warm-state]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from portrait_studio.providers._hosted import verify_image  # noqa: E402
from portrait_studio.providers.bfl import BflOptions, BflProvider, request_body  # noqa: E402
from portrait_studio.providers.latency_store import LatencyStore  # noqa: E402
from portrait_studio.records import Request  # noqa: E402

SERVER = """
import json, sys
from portrait_studio.testing.sandbox import start_sandbox
sb = start_sandbox("bfl", port=int(sys.argv[1]), latency=float(sys.argv[2]), credits=1e6)
print("ready", flush=True)
sys.stdin.read()  # until the bench closes our stdin
s = sb.stats
print(json.dumps({"max_active": s.max_active, "paid": s.paid, "rejected_429": s.rejected[429],
                  "credits_spent": s.credits_spent, "polls": s.polls}), flush=True)
"""


def warm_up() -> None:
    """Pay the one-time costs (module imports, codec set-up) a running studio has already paid."""
    from PIL import Image

    for fmt in ("JPEG", "PNG"):
        out = io.BytesIO()
        Image.new("RGB", (16, 16)).save(out, fmt)
        verify_image(out.getvalue(), "bfl")
    request_body(_request("flux-1.1-pro", 0))


def _request(model: str, i: int) -> Request:
    return Request(model=model, provider="bfl", prompt=f"portrait {i}", seed=i, width=512, height=512,
                   output_format="jpeg")


class _CountingLoop(asyncio.SelectorEventLoop):
    """The default event loop, counting how often it went to sleep waiting for the network or a
    timer (a select that blocked for more than 50 us): each such wakeup costs CPU of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps = 0
        select = self._selector.select  # type: ignore[attr-defined]

        def counted(timeout: float | None = None) -> Any:
            started = time.perf_counter()
            events = select(timeout)
            if time.perf_counter() - started > 50e-6:
                self.sleeps += 1
            return events

        self._selector.select = counted  # type: ignore[attr-defined]


def wakeup_cost_ms(samples: int = 40) -> float:
    """CPU milliseconds one wakeup of an idle event loop costs on this machine (asyncio.sleep
    of 50 ms, nothing else): on a VM it can cost more than a poll."""

    async def sleeps() -> float:
        cpu0 = time.process_time()
        for _ in range(samples):
            await asyncio.sleep(0.05)
        return (time.process_time() - cpu0) * 1000 / samples

    return asyncio.run(sleeps())


def run_counted(coro: Any) -> tuple[Any, int]:
    """`asyncio.run(coro)` on the default loop, and how many times that loop slept."""
    with asyncio.Runner(loop_factory=_CountingLoop) as runner:
        out = runner.run(coro)
        return out, runner.get_loop().sleeps  # type: ignore[attr-defined]


async def run(model: str, n: int, url: str, store: LatencyStore | None = None) -> tuple[float, float]:
    # the client's default settings; marked as a sandbox client, as the studio builds it, so
    # what it saves is keyed by the sandbox and not by this run's port
    provider = BflProvider("sandbox-key", BflOptions(base_url=url), sandbox=True)
    if store is not None:
        provider.remember_latencies(store)  # what a studio-made client does
    requests = [_request(model, i) for i in range(n)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(provider.submit(r) for r in requests))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await provider.aclose()
    assert len({r.provider_task_id for r in results}) == n
    return wall, cpu


def bench(model: str, n: int, latency: float, limit: int, store: LatencyStore | None = None) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(latency)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
                              text=True)
    assert server.stdout is not None and server.stdin is not None
    try:
        assert server.stdout.readline().strip() == "ready"
        (wall, cpu), sleeps = run_counted(run(model, n, f"http://127.0.0.1:{port}", store))
        server.stdin.close()
        seen = json.loads(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    ideal = math.ceil(n / limit) * latency
    return {"wall": wall, "ideal": ideal, "ratio": wall / ideal, "cpu_ms": cpu * 1000 / n, "wakeups": sleeps / n,
            **seen}


def show(label: str, runs: list[dict[str, float]], n: int, repeat: int) -> None:
    best = min(runs, key=lambda r: r["ratio"])
    worst = max(runs, key=lambda r: r["ratio"])
    cpus = sorted(r["cpu_ms"] for r in runs)
    print(f"  {label}wall {best['wall']:.2f} s, ideal {best['ideal']:.2f} s, ratio to ideal {best['ratio']:.3f}"
          + (f" (worst of {repeat}: {worst['ratio']:.3f})" if repeat > 1 else "")
          + f"; client CPU {best['cpu_ms']:.1f} ms per request"
          + (f" (range {cpus[0]:.1f}-{cpus[-1]:.1f})" if repeat > 1 else "")
          + f" ({best['wakeups']:.1f} wakeups of the idle client per request)"
          + f", {best['polls'] / n:.1f} polls per request; most active at once {best['max_active']} "
          f"(429s: {best['rejected_429']}); {best['paid']} paid, {best['credits_spent']:g} credits")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario (the best and worst are shown)")
    parser.add_argument("--warm-state", action="store_true",
                        help="after each cold run, a warm one from the latencies the cold run saved")
    args = parser.parse_args()
    warm_up()
    wakeup = wakeup_cost_ms()
    print(f"this machine: one wakeup of an idle event loop costs {wakeup:.3f} ms of CPU (asyncio.sleep, nothing "
          "else; a few hundredths of a ms on bare metal, more on a VM)")
    for model, n, limit in (("flux-1.1-pro", args.requests, 24), ("flux-kontext-max", 8, 6)):
        cold, warm = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as home:
                store = LatencyStore(Path(home) / "latency.json")
                cold.append(bench(model, n, args.latency, limit, store))
                if args.warm_state:
                    warm.append(bench(model, n, args.latency, limit, store))
        print(f"{model}: {n} requests, {args.latency:g} s latency, {limit} active tasks allowed, default client settings")
        show("cold (nothing learnt yet): " if args.warm_state else "", cold, n, args.repeat)
        if warm:
            show("warm (latencies saved by the cold run): ", warm, n, args.repeat)
        assert all(r["max_active"] <= limit and r["paid"] == n for r in cold + warm)


if __name__ == "__main__":
    main()
