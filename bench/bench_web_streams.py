"""What do idle progress streams cost the studio server? (Issue #14: 1,000 idle streams ≈ 63 % of a core.)

Starts `portrait serve`'s app in a child process on loopback, records a run that will never
finish (its process died mid-run), opens N progress streams on it and measures the server's
CPU time (user + system, from /proc) over a window once all are connected. Prints the share
of one core, the ledger readings per second the server made, and how many streams had ended
by themselves when the run is watched past the idle timeout.

    python bench/bench_web_streams.py [--streams 1000] [--seconds 20] [--src PATH]

`--src` runs another checkout's code (e.g. main's) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

SERVER = textwrap.dedent("""
    import sys, os
    from pathlib import Path
    from portrait_studio.config import Studio
    from portrait_studio.web import create_app
    from portrait_studio.web.server import ServerThread
    import portrait_studio.web.app as web_app
    readings = 0
    real = web_app.run_progress
    def counted(*a, **k):
        global readings
        readings += 1
        return real(*a, **k)
    web_app.run_progress = counted
    server = ServerThread(create_app(Studio(sys.argv[1]), checker=None))
    print(server.url, flush=True)
    for line in sys.stdin:  # each line asks for the reading count
        print(readings, flush=True)
""")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interrupted_run(home: Path, src: Path) -> str:
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE / 'tests')!r})
        from _web_helpers import shoot_into_ledger
        from portrait_studio.config import Studio
        from portrait_studio.ledger import Ledger
        studio = Studio({str(home)!r})
        run_id, _ = shoot_into_ledger(studio, ["flux-1.1-pro"], [1])
        with Ledger(studio.ledger_path) as ledger:
            ledger.set_run_status(run_id, "running")
            for row in ledger.requests(run_id):
                ledger.set_request_status(row.id, "accepted")
        print(run_id)
    """)
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


async def watch(url: str, ended: list[int], stop: asyncio.Event) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=None) as http, http.stream("GET", url) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                ended.append(1)
                return
            if stop.is_set():
                return


async def measure(base: str, run_id: str, pid: int, server: subprocess.Popen, streams: int, seconds: float) -> dict[str, float]:
    ended: list[int] = []
    stop = asyncio.Event()
    tasks = [asyncio.create_task(watch(f"{base}/api/runs/{run_id}/events", ended, stop)) for _ in range(streams)]
    await asyncio.sleep(max(3.0, streams / 200))  # let every stream connect and settle
    assert server.stdin and server.stdout
    server.stdin.write("\n")
    server.stdin.flush()
    readings0 = int(server.stdout.readline())
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    server.stdin.write("\n")
    server.stdin.flush()
    readings1 = int(server.stdout.readline())
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"core_share": (cpu1 - cpu0) / (t1 - t0), "readings_per_s": (readings1 - readings0) / (t1 - t0),
            "ended": float(len(ended))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--src", type=Path, default=HERE / "src")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "studio"
        run_id = interrupted_run(home, args.src)
        env = {**os.environ, "PYTHONPATH": str(args.src)}
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(home)], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout
            base = server.stdout.readline().strip()
            result = asyncio.run(measure(base, run_id, server.pid, server, args.streams, args.seconds))
        finally:
            server.kill()
            server.wait()
    print(f"{args.streams} idle progress streams on a run that will never finish ({args.src}):")
    print(f"  server CPU        {100 * result['core_share']:.1f} % of one core")
    print(f"  ledger readings   {result['readings_per_s']:.1f} per second")
    print(f"  streams ended     {int(result['ended'])} of {args.streams} within the window")


if __name__ == "__main__":
    main()
