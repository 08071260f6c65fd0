"""Step caching on CPU: how much transformer work each diffusers cache skips, and what it costs.

A FluxPipeline with tiny text encoders and VAE but a mid-size random FLUX.1 transformer
(default 2 double + 4 single blocks, 4 heads x 32) runs 28 steps at 256x256 with each cache
setting and without. For each we print:

  saved    fraction of transformer block calls skipped (counted on every block's attn.to_q,
           because a forward hook on a skipped block still fires under the cache)
  time     wall time relative to no cache (best of --repeats), and the same for process CPU
           time, which is steadier on a shared machine (torch runs --threads threads, default 1)
  px diff  mean absolute pixel difference to the uncached image (0-255), and PSNR in dB

Random weights decide when a cache fires, so the savings are not the real model's; the
point is the relative cost and that every setting runs. Real-model rates: see the notes.

    PYTHONPATH=src python bench/bench_cache_cpu.py [--size 256] [--steps 28] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def settings() -> list[tuple[str, str | None, dict[str, Any]]]:
    return [
        ("none", None, {}),
        ("FBC threshold 0.05", "fbc", {"threshold": 0.05}),
        ("FBC threshold 0.1", "fbc", {"threshold": 0.1}),
        ("FBC threshold 0.2", "fbc", {"threshold": 0.2}),
        ("FBC threshold 0.4", "fbc", {"threshold": 0.4}),
        ("TaylorSeer (interval 5, order 1)", "taylorseer", {}),
        ("TaylorSeer (interval 3, order 2)", "taylorseer", {"cache_interval": 3, "max_order": 2}),
        ("MagCache (FLUX ratios, 0.06)", "magcache", {}),
        ("MagCache (FLUX ratios, 0.12)", "magcache", {"threshold": 0.12}),
    ]


def build(layers: int, single: int, heads: int, head_dim: int) -> Any:
    from portrait_studio.testing.tiny import build_tiny_pipeline, tiny_flux1_transformer

    pipe = build_tiny_pipeline("flux1-dev")
    import torch

    torch.manual_seed(0)
    pipe.transformer = tiny_flux1_transformer(layers=layers, single_layers=single, heads=heads, head_dim=head_dim).eval()
    pipe.register_modules(transformer=pipe.transformer)
    return pipe


def count_block_calls(transformer: Any) -> list[int]:
    counter = [0]
    for name, module in transformer.named_modules():
        if name.endswith("attn.to_q"):
            module.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--single-layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args()

    import torch

    from portrait_studio.providers.local_runtime import make_cache_config

    torch.set_num_threads(args.threads)
    pipe = build(args.layers, args.single_layers, args.heads, args.head_dim)
    calls = count_block_calls(pipe.transformer)
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e6
    tokens = (args.size // 16) ** 2
    print(f"FLUX.1-shaped transformer: {args.layers} double + {args.single_layers} single blocks, "
          f"{args.heads}x{args.head_dim} heads, {params:.1f}M params; {args.size}² ({tokens} image tokens), "
          f"{args.steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads")

    def run(kind: str | None, params_: dict[str, Any]) -> tuple[np.ndarray, float, float, int]:
        best, best_cpu, image, n = math.inf, math.inf, None, 0
        for _ in range(args.repeats):
            if kind:
                pipe.transformer.enable_cache(make_cache_config(kind, params_, args.steps))
            calls[0] = 0
            start, start_cpu = time.perf_counter(), time.process_time()
            out = pipe("a portrait photo of a woman", height=args.size, width=args.size,
                       num_inference_steps=args.steps, guidance_scale=3.5, max_sequence_length=32,
                       generator=torch.Generator().manual_seed(0)).images[0]
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
            image, n = np.asarray(out).astype(np.float64), calls[0]
            if kind:
                pipe.transformer.disable_cache()
        assert image is not None
        return image, best, best_cpu, n

    rows = []
    run(None, {})  # warm-up: first calls pay for allocations and lazy imports
    base = run(None, {})
    base_image, base_time, base_cpu, base_calls = base
    for label, kind, params_ in settings():
        try:
            image, seconds, cpu, n = base if kind is None else run(kind, params_)
            rows.append({"setting": label, "block_calls": n, "of": base_calls, "saved": 1 - n / base_calls,
                         "seconds": seconds, "time_ratio": seconds / base_time,
                         "cpu_seconds": cpu, "cpu_ratio": cpu / base_cpu,
                         "mean_abs_px_diff": float(np.abs(image - base_image).mean()),
                         "psnr_db": psnr(image, base_image)})
        except Exception as exc:  # a setting that fails is reported, not fatal
            rows.append({"setting": label, "error": f"{type(exc).__name__}: {exc}"})

    print(f"\n{'setting':34} {'block calls':>12} {'saved':>6} {'time':>8} {'ratio':>6} {'cpu ratio':>9} {'px diff':>8} {'PSNR':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['setting']:34} FAILED {r['error']}")
            continue
        print(f"{r['setting']:34} {r['block_calls']:>5} / {r['of']:<5} {r['saved']:>6.0%} {r['seconds']:>7.2f}s "
              f"{r['time_ratio']:>6.2f} {r['cpu_ratio']:>9.2f} {r['mean_abs_px_diff']:>8.2f} {r['psnr_db']:>6.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
