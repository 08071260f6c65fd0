"""The README's main job against the sandbox's latency: how close the studio gets to the provider.

    PYTHONPATH=src python bench/bench_main_job.py [--latency 2.0] [--repeat 3]

Runs `portrait shoot rembrandt-studio-headshot.yaml --model flux-1.1-pro --seeds 3` in a fresh process
(a fresh studio each time, no key: the auto sandbox), with the sandbox's task latency set to `--latency`.
The ideal wall time is the latency itself (the three tasks run at once); the rest is the studio:
process start, opening the sandbox, planning, polling, downloads, labels, the checklist (its models
load while the provider works) and the contact sheet. Prints wall time, the ratio to the ideal and
the user+sys CPU time of the process.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BRIEF = ROOT / "src/portrait_studio/presets/briefs/rembrandt-studio-headshot.yaml"


def one_run(latency: float) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one main job."""
    from portrait_studio.testing.sandbox import start_sandbox

    with tempfile.TemporaryDirectory() as home:
        with start_sandbox("bfl", state_dir=Path(home) / "sandbox" / "bfl", latency=latency):
            pass  # the account's latency, kept in the studio's sandbox folder
        env = {**os.environ, "PORTRAIT_STUDIO_HOME": home, "PYTHONPATH": str(ROOT / "src")}
        for var in ("BFL_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN"):
            env.pop(var, None)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "portrait_studio", "shoot", str(BRIEF), "--model", "flux-1.1-pro",
                        "--seeds", "3", "--json"], env=env, check=True, capture_output=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(latency: float = 2.0, repeat: int = 3) -> dict[str, float]:
    runs = [one_run(latency) for _ in range(repeat)]
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    return {"latency_s": latency, "wall_s": round(wall, 2), "ratio": round(wall / latency, 2), "cpu_s": round(cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    r = measure(args.latency, args.repeat)
    print(f"main job (3-seed sandbox shoot): {r['wall_s']:.2f} s wall vs {r['latency_s']:.2f} s sandbox latency "
          f"= {r['ratio']:.2f}x the ideal; {r['cpu_s']:.2f} s CPU (user+sys)")


if __name__ == "__main__":
    main()
