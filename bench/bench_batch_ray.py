"""The same tiny-pipeline batch in this process, then on 1 and on 2 Ray GPU workers.

GPU workers are simulated on this CPU machine with a custom resource (`bench_gpu`), each holding
its own tiny random-weight FLUX.1 [schnell] pipeline (512×512, 4 steps). Every run goes through
the whole engine (ledger rows, budget, records) with no finishing steps, so what differs is only
where the pipeline runs. Each worker is warmed first (its pipeline loaded), so the timed batch
measures steady-state throughput, not start-up.

Prints images/s for each, the throughput ratio of 2 workers to 1, and the scheduling overhead
per image: the 1-worker Ray run minus the bare pipeline run one image after another, per image
(dispatch, the object store, recording on the driver — what the cluster adds to each image; work the
driver overlaps with the worker's next image does not count).

    python bench/bench_batch_ray.py [--images 24] [--out bench/results/cpu-batch-ray.json] [--real-gpus]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as on a Ray worker: one torch thread per pipeline, every thread
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from portrait_studio.batch import BatchFile, BatchPerson, plan_batch  # noqa: E402
from portrait_studio.config import Studio  # noqa: E402
from portrait_studio.engine import Engine, Plan  # noqa: E402
from portrait_studio.records import Request  # noqa: E402

SIZE = {"output": {"width": 512, "height": 512}}


def requests(n: int, tag: str) -> tuple[Request, ...]:
    people = [BatchPerson(name=f"{tag} {i}", overrides=SIZE) for i in range(n)]
    batch = BatchFile(brief="rembrandt-studio-headshot", model="flux-1-schnell", provider="local", seeds=1,
                      rerolls=0, seed=1, people=people)
    return plan_batch(batch, seed=1).requests


async def timed(studio: Studio, weights: str, n: int, runner: Any = None, warm: int = 0) -> tuple[float, float]:
    """(wall seconds of the timed batch, mean seconds the pipeline itself took per image)."""
    async with Engine.open(studio, ["local"], checker=None, sign=False, options={"local": {"weights": weights}}) as engine:
        if runner is not None:
            runner.engine = engine
            engine.runner = runner
        if warm:
            warm_run = engine.record(Plan(kind="batch", requests=requests(warm, "warm")))
            await engine.execute(warm_run)
        run_id = engine.record(Plan(kind="batch", requests=requests(n, f"timed {time.time()}")))
        start = time.perf_counter()
        report = await engine.execute(run_id)
        seconds = time.perf_counter() - start
        assert len(report.done) == n, [o.error for o in report.failed]
        generate = [i.timings["generate_s"] for i in engine.ledger.images(run_id=run_id, limit=n)]
        return seconds, sum(generate) / len(generate)


async def pipeline_only(weights: str, n: int) -> float:
    """The pipeline alone, one image after another, no engine: the compute every run has to do."""
    from portrait_studio.providers.local import LocalProvider

    provider = LocalProvider({"weights": weights})
    await provider.submit(requests(1, "warm pipeline")[0])
    start = time.perf_counter()
    for r in requests(n, "pipeline"):
        await provider.submit(r)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--real-gpus", action="store_true", help="GPU workers on this machine's GPUs, not simulated")
    args = parser.parse_args()

    import ray
    import torch

    from portrait_studio.cluster import ClusterOptions, ClusterRunner
    from portrait_studio.testing.tiny import save_tiny_pipeline

    torch.set_num_threads(1)
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PORTRAIT_STUDIO_HOME"] = str(Path(tmp) / "home")
        studio = Studio(Path(tmp) / "home")
        weights = str(save_tiny_pipeline("flux1-schnell", Path(tmp) / "schnell"))
        pure = asyncio.run(pipeline_only(weights, n))
        local, _ = asyncio.run(timed(studio, weights, n, warm=1))
        resource = None if args.real_gpus else "bench_gpu"
        ray.init(num_cpus=os.cpu_count(), resources={"bench_gpu": 2} if resource else None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False, object_store_memory=128 * 1024 * 1024)
        try:
            results: dict[int, tuple[float, float]] = {}
            for workers in (1, 2):
                runner = ClusterRunner(ClusterOptions(address="auto", gpu_resource=resource, gpu_workers=workers,
                                                      cpu_workers=0))
                try:
                    results[workers] = asyncio.run(timed(studio, weights, n, runner=runner, warm=2 * workers))
                finally:
                    runner.close()
        finally:
            ray.shutdown()
    (one, _), (two, _) = results[1], results[2]
    row = {
        "images": n, "size": "512x512", "steps": 4, "pipeline": "tiny FLUX.1 [schnell] (random weights)",
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "ray": ray.__version__, "torch": torch.__version__,
        "in_process_s": round(local, 3), "ray_1_worker_s": round(one, 3), "ray_2_workers_s": round(two, 3),
        "images_per_s": {"in_process": round(n / local, 3), "ray_1": round(n / one, 3), "ray_2": round(n / two, 3)},
        "throughput_ratio_2_vs_1": round(one / two, 3),
        "pipeline_only_s": round(pure, 3),
        "scheduling_overhead_per_image_s": round((one - pure) / n, 4),
        "engine_overhead_per_image_s": round((local - pure) / n, 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(f"in process      {local:7.2f} s  {n / local:6.2f} images/s")
    print(f"Ray, 1 worker   {one:7.2f} s  {n / one:6.2f} images/s")
    print(f"Ray, 2 workers  {two:7.2f} s  {n / two:6.2f} images/s")
    print(f"throughput ratio 2 workers / 1 worker: {one / two:.2f}x")
    print(f"pipeline alone  {pure:7.2f} s  {n / pure:6.2f} images/s")
    print(f"scheduling overhead per image (Ray 1 worker - pipeline alone): {(one - pure) / n * 1000:+.0f} ms; "
          f"the engine in process: {(local - pure) / n * 1000:+.0f} ms")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if args.out:
        args.out.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
