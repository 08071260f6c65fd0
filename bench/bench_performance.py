"""Every performance target of the studio, measured side by side in one run on this machine.

    PYTHONPATH=src python bench/bench_performance.py            # all of it (x4plus on the CPU takes minutes)
    PYTHONPATH=src python bench/bench_performance.py --quick    # skip x4plus (its ratio is then not printed)

Runs, each in its own process so one does not warm the next:
- CPU upscale, 1024² → 2×: the default path (SPAN on ncnn, 2 threads) vs Real-ESRGAN x4plus on the ncnn
  CPU with 2 threads (target: ratio ≤ 0.2) vs Lanczos, wall / CPU / peak RSS (`bench_upscale.py`);
- the checklist at 1 MP and 21 MP, cold and warm, s/MP and peak RSS (`bench_checks.py --speed-only`);
- the README's main job against the sandbox's latency (`bench_main_job.py`);
- hosted shoots with the clients' default settings, ratio to the ideal wall time and client CPU per
  request, cold and with saved latencies (`bench_hosted_concurrency.py --warm-state`).
The load average is printed first: on a shared machine, CPU seconds are the numbers to compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(title: str, *args: str) -> None:
    print(f"\n== {title}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=False)
    print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out x4plus on the CPU (minutes)")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.machine()} · {os.cpu_count()} cores · "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())} · Python {platform.python_version()}")
    only = "standard,lanczos" if args.quick else "standard,lanczos,max"
    run("CPU upscale 1024² → 2× (default vs x4plus vs Lanczos)", str(HERE / "bench_upscale.py"), "--only", only,
        "--no-quality")
    run("checklist speed (1 MP and 21 MP, cold and warm)", str(HERE / "bench_checks.py"), "--speed-only")
    run("main job vs sandbox latency", str(HERE / "bench_main_job.py"), "--latency", "2.0", "--repeat", "3")
    run("hosted shoots, default client settings (cold, then with the latencies the cold pass saved)",
        str(HERE / "bench_hosted_concurrency.py"), "--repeat", "2", "--warm-state")


if __name__ == "__main__":
    main()
