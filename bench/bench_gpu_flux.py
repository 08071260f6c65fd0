"""Seconds per 1024x1024, 28-step FLUX.1 [dev] image on one GPU: baseline, compile, fp8, cache, all.

Builds a full-size FLUX.1-dev-shaped FluxTransformer2DModel (19 double + 38 single blocks,
d=3072, 11.9B params) with random weights in bf16 directly on CUDA -- no downloads -- and
times the denoising loop the way FluxPipeline runs it (FlowMatch Euler scheduler, dynamic
shift, embedded guidance 3.5) on random text embeddings of the real shapes: 4096 image
tokens + 512 text tokens. The transformer is ~98% of FLUX.1-dev latency at 28 steps, so
text encoding and VAE decode are left out (and said so in the output).

Configurations (each in its own try/except; failures are reported, not fatal):
  baseline      bf16 eager
  compile       torch.compile of the repeated blocks (warm-up incl. compile reported apart);
                --compile-mode whole compiles the whole transformer instead
  fp8           torchao Float8DynamicActivationFloat8WeightConfig, PerRow (skipped if no torchao)
  fbc / magcache / taylorseer   diffusers step caches on bf16 eager
  all           fp8 + compile + the --all-cache cache

For every row: best and mean seconds per image (warm-up excluded), warm-up seconds, block
calls run (attn.to_q counted) vs baseline, achieved TFLOP/s = nominal FLOPs / time (74.4
TFLOP per step at 1024², scaled by token count) and as a fraction of the card's dense bf16
peak, and the output difference vs the baseline's final latents (relative L2, cosine).
Random weights make cache hit rates unlike the real model's: the cache rows show the cost
of the machinery and an upper bound on its effect, not the real model's quality.

    python bench/bench_gpu_flux.py --out $OUT/gpu.json                 # on the GPU
    python bench/bench_gpu_flux.py --tiny --out /tmp/gpu-tiny.json     # same code paths, CPU, seconds
    python bench/bench_gpu_flux.py --wheels /path/to/wheels ...        # pip-install diffusers/torchao first

Targets (H100): <= 2.4 s/image without step caching, <= 1.0 s with it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from typing import Any

FLUX1_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                 num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                 guidance_embeds=True, axes_dims_rope=[16, 56, 56])
TINY = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=16,
            num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=32,
            guidance_embeds=True, axes_dims_rope=[4, 6, 6])

# Dense (no sparsity) peaks in TFLOP/s: (bf16, fp8). Matched on torch.cuda.get_device_name().
PEAKS = [("H200", 989.4, 1978.9), ("H100 PCIe", 756.0, 1513.0), ("H100 NVL", 835.0, 1670.0),
         ("H100", 989.4, 1978.9), ("GH200", 989.4, 1978.9), ("B200", 2250.0, 4500.0),
         ("A100", 312.0, 0.0), ("L40S", 362.0, 733.0), ("RTX 4090", 165.0, 330.0)]


# --------------------------------------------------------------------------- environment
def ensure_packages(wheels: str | None, report: dict[str, Any]) -> None:
    """Install diffusers / torchao from a wheel folder when they are missing (no index, no network)."""
    for name, extra in (("diffusers", []), ("torchao", ["--no-deps"])):
        try:
            importlib.import_module(name)
            continue
        except Exception as exc:
            report[f"{name}_import_error"] = f"{type(exc).__name__}: {exc}"
        if not wheels:
            continue
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels, *extra, name]
        done = subprocess.run(cmd, capture_output=True, text=True)
        report[f"{name}_install"] = "ok" if done.returncode == 0 else done.stderr[-800:]
        importlib.invalidate_caches()


def environment(report: dict[str, Any]) -> None:
    import torch

    report.update(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda or "none")
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
        report["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    for name in ("diffusers", "torchao"):
        try:
            report[name] = importlib.import_module(name).__version__
        except Exception as exc:
            report[name] = f"not importable: {type(exc).__name__}: {exc}"


def peak_tflops(gpu: str | None, override: float | None) -> tuple[float | None, float | None]:
    if override:
        return override, None
    for key, bf16, fp8 in PEAKS:
        if gpu and key in gpu:
            return bf16, fp8 or None
    return None, None


# --------------------------------------------------------------------------- model + loop
def flops_per_step(cfg: dict[str, Any], image_tokens: int, text_tokens: int) -> float:
    """Linear layers 12·d² MACs per token per block (double and single alike) + attention 4·N²·d per block.

    For FLUX.1 at 1024² (N = 4608) this is 74.4 TFLOP, matching calflops' 74.5.
    """
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    n = image_tokens + text_tokens
    blocks = cfg["num_layers"] + cfg["num_single_layers"]
    return blocks * (2 * 12 * d * d * n + 4 * n * n * d)


def build_transformer(cfg: dict[str, Any], device: str, dtype: Any, seed: int = 0) -> Any:
    """Random weights, initialised on the target device (a 12B model never touches host memory)."""
    import torch
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    with torch.device(device):
        model = FluxTransformer2DModel(**cfg)
    model.to(dtype=dtype).eval().requires_grad_(False)
    with torch.no_grad():  # small, GPT-style init keeps 57 random blocks finite in bf16
        gen = torch.Generator(device=device).manual_seed(seed)
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen, device=device, dtype=torch.float32).mul_(0.02).to(dtype))
    return model


def make_inputs(cfg: dict[str, Any], res: int, text_tokens: int, steps: int, device: str, dtype: Any) -> dict[str, Any]:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    side = res // 16  # VAE /8, then 2x2 packing
    gen = torch.Generator(device=device).manual_seed(1)
    latents = torch.randn(1, side * side, cfg["in_channels"], generator=gen, device=device, dtype=dtype)
    text = torch.randn(1, text_tokens, cfg["joint_attention_dim"], generator=gen, device=device, dtype=dtype)
    pooled = torch.randn(1, cfg["pooled_projection_dim"], generator=gen, device=device, dtype=dtype)
    img_ids = torch.zeros(side, side, 3, device=device)
    img_ids[..., 1] += torch.arange(side, device=device)[:, None]
    img_ids[..., 2] += torch.arange(side, device=device)[None, :]
    scheduler = FlowMatchEulerDiscreteScheduler(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5,
                                                max_shift=1.15, use_dynamic_shifting=True, shift=3.0)
    sigmas = [1.0 - i / steps * (1 - 1 / steps) for i in range(steps)]
    mu = calculate_shift(side * side, 256, 4096, 0.5, 1.15)
    return dict(latents=latents, text=text, pooled=pooled, img_ids=img_ids.reshape(-1, 3),
                txt_ids=torch.zeros(text_tokens, 3, device=device), scheduler=scheduler, sigmas=sigmas, mu=mu,
                guidance=torch.full((1,), 3.5, device=device, dtype=torch.float32))


def denoise(model: Any, inputs: dict[str, Any], device: str) -> Any:
    """FluxPipeline's loop, transformer and scheduler only; returns the final latents."""
    import torch

    sch = inputs["scheduler"]
    sch.set_timesteps(sigmas=inputs["sigmas"], device=device, mu=inputs["mu"])
    latents = inputs["latents"].clone()
    with torch.inference_mode():
        for t in sch.timesteps:
            with model.cache_context("cond"):
                noise = model(hidden_states=latents, timestep=(t / 1000).expand(1).to(latents.dtype),
                              guidance=inputs["guidance"], pooled_projections=inputs["pooled"],
                              encoder_hidden_states=inputs["text"], txt_ids=inputs["txt_ids"],
                              img_ids=inputs["img_ids"], return_dict=False)[0]
            latents = sch.step(noise, t, latents, return_dict=False)[0]
    if hasattr(model, "_reset_stateful_cache"):
        model._reset_stateful_cache()
    return latents


def cache_config(kind: str, steps: int, threshold: float | None) -> Any:
    import diffusers

    if kind == "fbc":
        return diffusers.FirstBlockCacheConfig(threshold=threshold if threshold is not None else 0.12)
    if kind == "taylorseer":
        return diffusers.TaylorSeerCacheConfig(cache_interval=5, disable_cache_before_step=3, max_order=1)
    if kind == "magcache":
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return diffusers.MagCacheConfig(threshold=threshold if threshold is not None else 0.06,
                                        mag_ratios=FLUX_MAG_RATIOS, num_inference_steps=steps)
    raise ValueError(kind)


def quantize_fp8(model: Any) -> None:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))


# --------------------------------------------------------------------------- one configuration
def run_config(name: str, spec: dict[str, Any], args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    device, dtype = ctx["device"], ctx["dtype"]
    row: dict[str, Any] = {"config": name, **{k: v for k, v in spec.items() if v}}
    model = build_transformer(ctx["cfg"], device, dtype)
    counter = [0]
    # A Python counter inside a compiled graph becomes a guard and forces a recompile per call,
    # so compiled rows do not count (their cache decisions match the eager cache rows').
    if not spec.get("compile"):
        for mod_name, mod in model.named_modules():
            if mod_name.endswith("attn.to_q"):
                mod.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    try:
        setup = time.perf_counter()
        if spec.get("fp8"):
            if device != "cuda":
                raise RuntimeError("fp8 needs a CUDA GPU (skipped on CPU)")
            quantize_fp8(model)
        if args.attention:
            model.set_attention_backend(args.attention)
        if spec.get("cache"):
            model.enable_cache(cache_config(spec["cache"], args.steps, args.cache_threshold))
        if spec.get("compile"):
            # The cache hooks are torch.compiler.disable'd: with a cache, allow graph breaks around them.
            fullgraph = args.compile_fullgraph and not spec.get("cache")
            row["fullgraph"] = fullgraph
            if args.compile_mode == "whole":
                model = torch.compile(model, fullgraph=fullgraph, mode=args.compile_inductor_mode)
            else:
                model.compile_repeated_blocks(fullgraph=fullgraph, mode=args.compile_inductor_mode)
        row["setup_s"] = round(time.perf_counter() - setup, 3)

        def timed() -> tuple[float, Any]:
            sync()
            start = time.perf_counter()
            out = denoise(model, ctx["inputs"], device)
            sync()
            return time.perf_counter() - start, out

        def sync() -> None:
            if device == "cuda":
                torch.cuda.synchronize()

        row["warmup_s"], _ = timed()  # includes compilation / autotuning
        times, out = [], None
        for _ in range(args.repeats):
            if time.perf_counter() > ctx["deadline"]:
                break
            counter[0] = 0
            seconds, out = timed()
            times.append(seconds)
        if not times:
            raise TimeoutError("no timed repeat fitted in the time limit")
        best = min(times)
        row.update(best_s=round(best, 4), mean_s=round(sum(times) / len(times), 4), repeats=len(times),
                   block_calls=None if spec.get("compile") else counter[0], finite=bool(torch.isfinite(out).all()))
        nominal = ctx["flops_per_step"] * args.steps
        row["tflops_nominal_per_s"] = round(nominal / best / 1e12, 2)
        if ctx["peak_bf16"]:
            row["fraction_of_bf16_peak"] = round(nominal / best / 1e12 / ctx["peak_bf16"], 4)
        if name == "baseline":
            ctx["baseline"] = out.float()
            ctx["baseline_calls"] = counter[0]
            ctx["baseline_s"] = best
        elif "baseline" in ctx:
            ref, cur = ctx["baseline"], out.float()
            row["rel_l2_vs_baseline"] = round(float((cur - ref).norm() / ref.norm().clamp_min(1e-12)), 5)
            row["cosine_vs_baseline"] = round(float(torch.nn.functional.cosine_similarity(
                cur.flatten(), ref.flatten(), dim=0)), 6)
            row["speedup_vs_baseline"] = round(ctx["baseline_s"] / best, 3)
            if row["block_calls"] is not None:
                row["block_calls_saved"] = round(1 - counter[0] / ctx["baseline_calls"], 4)
        if device == "cuda":
            row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    finally:
        import gc

        model = None  # free the weights before the next configuration is built
        out = None
        if spec.get("compile"):
            torch._dynamo.reset()  # compiled graphs hold references to the parameters
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return row


CONFIGS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "compile": {"compile": True},
    "fp8": {"fp8": True},
    "fbc": {"cache": "fbc"},
    "magcache": {"cache": "magcache"},
    "taylorseer": {"cache": "taylorseer"},
    "fp8+compile": {"fp8": True, "compile": True},
    "compile+cache": {"compile": True, "cache": "ALL"},
    "all": {"fp8": True, "compile": True, "cache": "ALL"},
}


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report.get('gpu', report['device'])} | torch {report['torch']} | diffusers {report.get('diffusers')} | "
          f"torchao {report.get('torchao')}")
    print(f"{report['resolution']}², {report['steps']} steps, {report['image_tokens']}+{report['text_tokens']} tokens, "
          f"{report['tflop_per_step']:.2f} TFLOP/step; transformer loop only (no text encoders, no VAE)")
    head = (f"{'config':14} {'s/image':>8} {'mean':>8} {'warm-up':>8} {'speedup':>7} {'calls':>6} {'saved':>6} "
            f"{'TFLOP/s':>8} {'%peak':>6} {'relL2':>8} {'mem GiB':>7}")
    print(head)
    print("-" * len(head))
    for r in report["rows"]:
        if "error" in r:
            print(f"{r['config']:14} FAILED: {r['error']}")
            continue
        pct = f"{100 * r['fraction_of_bf16_peak']:.0f}%" if "fraction_of_bf16_peak" in r else "-"
        saved = f"{100 * r['block_calls_saved']:.0f}%" if "block_calls_saved" in r else "-"
        print(f"{r['config']:14} {r['best_s']:>8.3f} {r['mean_s']:>8.3f} {r['warmup_s']:>8.1f} "
              f"{r.get('speedup_vs_baseline', 1.0):>7.2f} {r['block_calls'] or '-':>6} "
              f"{saved:>6} {r['tflops_nominal_per_s']:>8.1f} {pct:>6} "
              f"{r.get('rel_l2_vs_baseline', 0.0):>8.4f} {r.get('peak_mem_gib', 0):>7}")
    print("TFLOP/s is nominal (uncached) FLOPs / time: for cached rows it counts skipped blocks as done.")
    targets = report.get("targets")
    if targets:
        print(f"targets: no step cache <= 2.4 s -> {targets['best_uncached']}; "
              f"with step cache <= 1.0 s -> {targets['best_cached']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="small config on CPU: exercise every code path")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "bench_gpu_flux.json"))
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=540.0, help="seconds for the whole run")
    parser.add_argument("--cache-threshold", type=float, default=None, help="FBC (default 0.12) / MagCache (0.06)")
    parser.add_argument("--all-cache", default="fbc", choices=["fbc", "magcache", "taylorseer"])
    parser.add_argument("--compile-mode", default="regional", choices=["regional", "whole"])
    parser.add_argument("--compile-fullgraph", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile-inductor-mode", default=None, help="e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--attention", default=None, help="diffusers attention backend, e.g. _native_cudnn, flash")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak, if the GPU is unknown")
    parser.add_argument("--wheels", default=None, help="folder of wheels to install diffusers/torchao from")
    args = parser.parse_args()
    started = time.perf_counter()

    report: dict[str, Any] = {"argv": sys.argv[1:], "rows": []}
    ensure_packages(args.wheels, report)
    environment(report)
    import torch

    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible; use --tiny to run on CPU")
    if args.tiny:
        args.resolution, args.text_tokens = min(args.resolution, 128), min(args.text_tokens, 32)
        args.steps = min(args.steps, 8)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = TINY if args.tiny else FLUX1_DEV
    dtype = torch.float32 if args.tiny else torch.bfloat16
    image_tokens = (args.resolution // 16) ** 2
    peak_bf16, peak_fp8 = peak_tflops(report.get("gpu"), args.peak_tflops)
    fps = flops_per_step(cfg, image_tokens, args.text_tokens)
    report.update(device=device, dtype=str(dtype), resolution=args.resolution, steps=args.steps,
                  image_tokens=image_tokens, text_tokens=args.text_tokens, tflop_per_step=fps / 1e12,
                  peak_bf16_tflops=peak_bf16, peak_fp8_tflops=peak_fp8, model_config=cfg)
    ctx: dict[str, Any] = {"cfg": cfg, "device": device, "dtype": dtype, "flops_per_step": fps,
                           "peak_bf16": peak_bf16, "deadline": started + args.time_limit}
    try:
        ctx["inputs"] = make_inputs(cfg, args.resolution, args.text_tokens, args.steps, device, dtype)
    except Exception as exc:
        report["fatal"] = f"{type(exc).__name__}: {exc}"
        write(args.out, report)
        raise
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    if "baseline" in names:  # the comparison column needs it first
        names.remove("baseline")
        names.insert(0, "baseline")
    for name in names:
        spec = dict(CONFIGS.get(name, {}))
        if spec.get("cache") == "ALL":
            spec["cache"] = args.all_cache
        if name not in CONFIGS:
            report["rows"].append({"config": name, "error": "unknown configuration"})
            continue
        if time.perf_counter() > ctx["deadline"]:
            report["rows"].append({"config": name, "error": "skipped: overall time limit reached"})
            continue
        if spec.get("fp8") and str(report.get("torchao", "")).startswith("not importable"):
            report["rows"].append({"config": name, "error": f"skipped: torchao {report.get('torchao')}"})
            continue
        print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", flush=True)
        try:
            row = run_config(name, spec, args, ctx)
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            row = {"config": name, "error": f"{type(exc).__name__}: {first_line}",
                   "traceback": traceback.format_exc()[-2000:]}
        report["rows"].append(row)
        write(args.out, report)  # after every row, so a kill leaves what was measured
    ok = [r for r in report["rows"] if "best_s" in r]
    uncached = [r["best_s"] for r in ok if "cache" not in r]
    cached = [r["best_s"] for r in ok if "cache" in r]
    report["targets"] = {"best_uncached": min(uncached) if uncached else None,
                         "best_cached": min(cached) if cached else None}
    report["total_s"] = round(time.perf_counter() - started, 1)
    write(args.out, report)
    print_table(report)
    print(f"\nwrote {args.out} ({report['total_s']} s)")


def write(path: str, report: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=str)


if __name__ == "__main__":
    main()
    sys.exit(0)
