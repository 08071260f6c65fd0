"""32 portraits through the BFL client against the BFL sandbox with 2 s simulated latency.

The account allows 24 active tasks, so the ideal wall time is ceil(32/24) x 2 s = 4 s.
Prints the ratio to that ideal and the client's CPU time per request. The sandbox runs
in its own process so the CPU time measured here is the client's alone.

    python bench/bench_hosted_concurrency.py [--requests 32] [--latency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from portrait_studio.providers.bfl import BflOptions, BflProvider  # noqa: E402
from portrait_studio.records import Request  # noqa: E402

SERVER = """
import sys, time
from portrait_studio.testing.sandbox import start_sandbox
sb = start_sandbox("bfl", port=int(sys.argv[1]), latency=float(sys.argv[2]), credits=1e6)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


async def run(n: int, latency: float, url: str) -> tuple[float, float]:
    provider = BflProvider("sandbox-key", BflOptions(base_url=url))  # the client's default settings
    requests = [Request(model="flux-1.1-pro", provider="bfl", prompt=f"portrait {i}", seed=i, width=512,
                        height=512, output_format="jpeg") for i in range(n)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(provider.submit(r) for r in requests))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await provider.aclose()
    assert len({r.provider_task_id for r in results}) == n
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.latency)], stdout=subprocess.PIPE,
                              env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        wall, cpu = asyncio.run(run(args.requests, args.latency, f"http://127.0.0.1:{port}"))
        stats = httpx.get(f"http://127.0.0.1:{port}/v1/credits", headers={"x-key": "sandbox-key"}).json()
    finally:
        server.terminate()
        server.wait()
    ideal = math.ceil(args.requests / 24) * args.latency
    print(f"{args.requests} requests, {args.latency:g} s latency, 24 active tasks")
    print(f"wall {wall:.2f} s, ideal {ideal:.2f} s, ratio to ideal {wall / ideal:.3f}")
    print(f"client CPU {cpu * 1000 / args.requests:.1f} ms per request ({cpu:.2f} s total)")
    print(f"credits spent {1e6 - stats['credits']:g}")


if __name__ == "__main__":
    main()
