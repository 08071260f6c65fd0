"""The README's main job against the sandbox's latency: how close the studio gets to the provider.

    PYTHONPATH=src python bench/bench_main_job.py [--latency 2.0] [--repeat 3] [--baseline CHECKOUT]

Runs `portrait shoot rembrandt-studio-headshot.yaml --model flux-1.1-pro --seeds 3` in a fresh process
(a fresh studio each time, no key: the auto sandbox), with the sandbox's task latency set to `--latency`.
The ideal wall time is the latency itself (the three tasks run at once); the rest is the studio:
process start, opening the sandbox, planning, polling, downloads, labels, the checklist (its models
load while the provider works) and the contact sheet. Prints wall time, the ratio to the ideal and
the user+sys CPU time of the process — for a fresh studio (the README's first command) and for the
same job run again in that studio. The sandbox runs inside the CLI's process, so its own work (making
and encoding the test images) is in these numbers; a real provider's is not.

Python's bytecode is compiled first and kept (as a wheel install or any earlier run leaves it), even
where the environment says PYTHONDONTWRITEBYTECODE: otherwise every run would also compile the
studio's ~75 modules from source (0.2 s), which no user pays twice.

`--baseline CHECKOUT` runs the same job from another checkout's `src/` (e.g. a `git worktree` of an
older commit) in turns with this one, so both are measured side by side under the same load.
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


def one_run(latency: float, src: Path = ROOT / "src") -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall seconds, CPU seconds) of the main job in a fresh studio, then of the same job again in
    that studio (its ledger already made: what every later shoot costs)."""
    from portrait_studio.testing.sandbox import start_sandbox

    with tempfile.TemporaryDirectory() as home:
        with start_sandbox("bfl", state_dir=Path(home) / "sandbox" / "bfl", latency=latency):
            pass  # the account's latency, kept in the studio's sandbox folder
        env = {**os.environ, "PORTRAIT_STUDIO_HOME": home, "PYTHONPATH": str(src)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for var in ("BFL_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN"):
            env.pop(var, None)
        measured = []
        for _ in range(2):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "portrait_studio", "shoot", str(BRIEF), "--model", "flux-1.1-pro",
                            "--seeds", "3", "--json"], env=env, check=True, capture_output=True)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            measured.append((wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)))
    return measured[0], measured[1]


def compile_bytecode(src: Path) -> None:
    """What `pip install` of a wheel (or a first run) leaves: each module's __pycache__ entry."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], env=env, check=True)


def summarise(latency: float, runs: list[tuple[tuple[float, float], tuple[float, float]]]) -> dict[str, float]:
    wall = statistics.median(first[0] for first, _ in runs)
    cpu = statistics.median(first[1] for first, _ in runs)
    again = statistics.median(second[0] for _, second in runs)
    again_cpu = statistics.median(second[1] for _, second in runs)
    return {"latency_s": latency, "wall_s": round(wall, 2), "ratio": round(wall / latency, 2), "cpu_s": round(cpu, 2),
            "again_wall_s": round(again, 2), "again_ratio": round(again / latency, 2), "again_cpu_s": round(again_cpu, 2)}


def measure(latency: float = 2.0, repeat: int = 3) -> dict[str, float]:
    return summarise(latency, [one_run(latency) for _ in range(repeat)])


def report(r: dict[str, float], who: str) -> None:
    print(f"{who}: main job (3-seed sandbox shoot): {r['wall_s']:.2f} s wall vs {r['latency_s']:.2f} s sandbox "
          f"latency = {r['ratio']:.2f}x the ideal; {r['cpu_s']:.2f} s CPU (user+sys) — in a fresh studio")
    print(f"{who}: the same job again in that studio: {r['again_wall_s']:.2f} s wall = {r['again_ratio']:.2f}x "
          f"the ideal; {r['again_cpu_s']:.2f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout, measured in turns with this one")
    args = parser.parse_args()
    compile_bytecode(ROOT / "src")
    if args.baseline is not None:
        compile_bytecode(args.baseline.resolve() / "src")
    if args.baseline is None:
        report(measure(args.latency, args.repeat), "this checkout")
        return
    ours, theirs = [], []
    for _ in range(args.repeat):
        ours.append(one_run(args.latency))
        theirs.append(one_run(args.latency, args.baseline.resolve() / "src"))
    report(summarise(args.latency, ours), "this checkout")
    report(summarise(args.latency, theirs), f"baseline {args.baseline}")


if __name__ == "__main__":
    main()
