"""Loading FLUX weights into diffusers pipelines once per process, and the speed options.

The local provider asks this module for a pipeline class over some weights; the heavy
components (text encoders, transformer, VAE) are loaded once per (weights, dtype, device,
speed settings) and every other pipeline over the same weights is made with `from_pipe`,
which shares the module objects instead of copying them. Speed and memory options
(attention backend, compile, torchao quantization, CPU offload) change the transformer in
place, so they are part of the cache key; step caching is switched on per call instead.

Everything here imports torch/diffusers lazily: importing the package stays instant.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import CapabilityError, NotConfigured

__all__ = [
    "LoadedWeights",
    "clear_pipeline_cache",
    "derived_pipeline",
    "karras_on_flow_sigmas",
    "load_weights",
    "make_scheduler",
    "model_revision",
    "resolve_device",
    "resolve_dtype",
    "resolve_weights",
    "runtime_versions",
    "scheduler_record",
]

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedWeights:
    """A base pipeline and the pipelines derived from it, behind one lock (one call at a time)."""

    key: tuple[Any, ...]
    base: Any
    revision: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    derived: dict[str, Any] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)  # adapter name -> LoRA file


_CACHE: dict[tuple[Any, ...], LoadedWeights] = {}
_CACHE_LOCK = threading.Lock()


def clear_pipeline_cache() -> None:
    """Forget every loaded pipeline (frees memory once nothing else holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def resolve_weights(weights: str) -> tuple[str, bool]:
    """(where, is_local_folder). A missing folder raises NotConfigured naming it."""
    path = Path(weights).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    looks_like_path = weights.startswith((".", "/", "~")) or "\\" in weights or weights.count("/") != 1
    if looks_like_path or not _REPO_ID.match(weights) or path.exists():
        raise NotConfigured(
            f"local weights not found: {path}",
            provider="local",
            hint="pass --weights with a folder saved by diffusers (it holds model_index.json) "
            "or a Hugging Face repo id such as black-forest-labs/FLUX.1-dev",
        )
    return weights, False


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CapabilityError("device 'cuda' was asked for but torch sees no CUDA GPU",
                              hint="use --device cpu, or install a CUDA build of torch")
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


def model_revision(where: str, is_local: bool) -> str:
    """The commit of a hub snapshot, else a hash of the folder's config and index files.

    The hash covers model_index.json, every component's config.json and the
    *.index.json shard maps: enough to tell two different checkpoints apart without
    reading gigabytes of weights.
    """
    folder = Path(where) if is_local else _hub_snapshot(where)
    if folder is None:
        return "unknown"
    if folder.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", folder.name):
        return folder.name
    digest = hashlib.sha256()
    files = [folder / "model_index.json", *sorted(folder.glob("*/config.json")), *sorted(folder.glob("**/*.index.json"))]
    for f in files:
        if f.is_file():
            digest.update(str(f.relative_to(folder)).encode())
            digest.update(f.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]


def _hub_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def runtime_versions() -> dict[str, str]:
    """The library versions that decide whether a seed reproduces elsewhere."""
    import diffusers
    import torch
    import transformers

    versions = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if torch.cuda.is_available():
        versions["gpu"] = torch.cuda.get_device_name(0)
    return versions


def load_weights(
    pipeline_class: str,
    weights: str,
    *,
    device: str,
    dtype: Any,
    attention_backend: str | None = None,
    compile_blocks: bool = False,
    quantize: str | None = None,
    offload: str | None = None,
    extra: dict[str, Any] | None = None,
) -> LoadedWeights:
    """Load (or reuse) `pipeline_class` over `weights` with the speed options applied once."""
    where, is_local = resolve_weights(weights)
    key = (pipeline_class, where, str(dtype), device, attention_backend, compile_blocks, quantize, offload)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        pipe = _from_pretrained(pipeline_class, where, is_local, dtype, extra or {})
        _apply_speed_options(pipe, device, attention_backend, compile_blocks, quantize, offload)
        loaded = LoadedWeights(key=key, base=pipe, revision=model_revision(where, is_local))
        _CACHE[key] = loaded
        return loaded


def _from_pretrained(pipeline_class: str, where: str, is_local: bool, dtype: Any, extra: dict[str, Any]) -> Any:
    import diffusers

    cls = getattr(diffusers, pipeline_class, None)
    if cls is None:
        raise CapabilityError(f"diffusers {diffusers.__version__} has no pipeline {pipeline_class}",
                              hint="upgrade diffusers (pip install -U diffusers)")
    try:
        pipe = cls.from_pretrained(where, dtype=dtype, **extra)
    except OSError as exc:
        hint = ("check the folder holds a complete diffusers save (model_index.json and component folders)"
                if is_local else
                f"accept the licence on https://huggingface.co/{where}, run 'hf auth login', "
                "or pass --weights with a downloaded folder")
        raise NotConfigured(f"could not load {pipeline_class} weights from {where}: {exc}",
                            provider="local", hint=hint) from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _apply_speed_options(
    pipe: Any, device: str, attention_backend: str | None, compile_blocks: bool, quantize: str | None,
    offload: str | None,
) -> None:
    transformer = getattr(pipe, "transformer", None)
    if quantize and transformer is not None:
        quantize_transformer(transformer, quantize, device)
    if offload == "model":
        pipe.enable_model_cpu_offload()
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(device)
    if attention_backend and transformer is not None:
        try:
            transformer.set_attention_backend(attention_backend)
        except Exception as exc:
            raise CapabilityError(f"attention backend {attention_backend!r} is not usable here: {exc}",
                                  hint="try 'native' (always available), 'flash' or 'sage' with their packages") from exc
    if compile_blocks and transformer is not None:
        transformer.compile_repeated_blocks(fullgraph=True)


def quantize_transformer(transformer: Any, quantize: str, device: str) -> None:
    """torchao weight quantization of the transformer: fp8 (dynamic, row-wise) or int8 weight-only."""
    if device != "cuda":
        raise CapabilityError(f"quantize={quantize} needs a CUDA GPU (device is {device})",
                              hint="drop --quantize on CPU, or run on a GPU")
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Int8WeightOnlyConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:
        raise NotConfigured("quantization needs torchao, which is not installed", provider="local",
                            hint="pip install torchao") from exc
    config = (Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()) if quantize == "fp8"
              else Int8WeightOnlyConfig())
    transformer.to(device)
    quantize_(transformer, config)


def derived_pipeline(loaded: LoadedWeights, pipeline_class: str) -> Any:
    """`pipeline_class` sharing the base pipeline's modules (`from_pipe`), made once."""
    import diffusers

    if type(loaded.base).__name__ == pipeline_class:
        return loaded.base
    pipe = loaded.derived.get(pipeline_class)
    if pipe is None:
        pipe = getattr(diffusers, pipeline_class).from_pipe(loaded.base)
        pipe.set_progress_bar_config(disable=True)  # from_pipe does not carry it over
        loaded.derived[pipeline_class] = pipe
    return pipe


def make_cache_config(kind: str, params: dict[str, Any], steps: int) -> Any:
    """A diffusers step-cache config: 'fbc' (FirstBlockCache), 'taylorseer' or 'magcache'."""
    import diffusers

    if kind == "fbc":
        return diffusers.FirstBlockCacheConfig(**{"threshold": 0.2, **params})
    if kind == "taylorseer":
        return diffusers.TaylorSeerCacheConfig(**params)
    if kind == "magcache":
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        # diffusers interpolates the 28-step FLUX ratios onto other step counts itself.
        return diffusers.MagCacheConfig(**{"mag_ratios": FLUX_MAG_RATIOS, "num_inference_steps": steps, **params})
    raise CapabilityError(f"unknown step cache {kind!r}", hint="use fbc, taylorseer or magcache")



# --- samplers ---------------------------------------------------------------------------
# FLUX pipelines pass `mu` (the resolution shift) to every scheduler and skip their own
# linear sigmas for schedulers with `use_flow_sigmas`; DPMSolverMultistepScheduler then builds
# flow sigmas itself and shifts them by exp(mu), exactly as FlowMatch Euler does.
_SHIFT_KEYS = ("base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len")


@cache
def karras_on_flow_sigmas() -> bool:
    """Does this diffusers compute Karras sigmas on the flow schedule? (0.42.1: no — σ_max ≈ 157.)"""
    from diffusers import DPMSolverMultistepScheduler

    probe: Any = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        use_karras_sigmas=True, use_dynamic_shifting=True)
    probe.set_timesteps(8, mu=0.5)
    return float(probe.sigmas.max()) <= 1.0 + 1e-6


def make_scheduler(sampler: str | None, base: Any) -> tuple[Any, dict[str, Any]]:
    """(scheduler for this call, what to record). Euler (the default) is the pipeline's own scheduler.

    DPM++ 2M [Karras] is DPMSolverMultistepScheduler (dpmsolver++, order 2) on flow sigmas with
    the base scheduler's shift settings; Karras spacing only where `karras_on_flow_sigmas()`.
    """
    from ..samplers import DEFAULT_SAMPLER, SAMPLERS

    chosen = SAMPLERS[sampler or DEFAULT_SAMPLER]
    if chosen.id == DEFAULT_SAMPLER:
        return base, {"sampler": chosen.id, "karras": False}
    from diffusers import DPMSolverMultistepScheduler

    config = base.config
    if not config.get("use_dynamic_shifting", False):
        raise CapabilityError(f"these weights sample at a fixed shift ({config.get('shift', 1.0):g}); diffusers' "
                              f"DPM-Solver always applies FLUX's resolution shift, so {chosen.label} would change the "
                              "schedule they were made for", hint="use the Euler sampler with these weights")
    if config.get("time_shift_type", "exponential") != "exponential":
        raise CapabilityError(f"{chosen.label} needs FLUX's exponential time shift; these weights use "
                              f"{config.get('time_shift_type')}", hint="use the Euler sampler with these weights")
    karras = chosen.karras and karras_on_flow_sigmas()
    scheduler: Any = DPMSolverMultistepScheduler(
        num_train_timesteps=config.get("num_train_timesteps", 1000), algorithm_type="dpmsolver++", solver_order=2,
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=config.get("shift", 1.0),
        use_dynamic_shifting=True, time_shift_type="exponential", use_karras_sigmas=karras)
    scheduler.register_to_config(**{k: config[k] for k in _SHIFT_KEYS if k in config})  # FLUX.1's calculate_shift reads them
    record: dict[str, Any] = {"sampler": chosen.id, "karras": karras}
    if chosen.karras and not karras:
        import diffusers

        record["note"] = (f"Karras spacing not applied: diffusers {diffusers.__version__} computes Karras sigmas from "
                          "the DDPM schedule even with use_flow_sigmas, which a flow model cannot sample")
    return scheduler, record


def scheduler_record(scheduler: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Class, config and the sigmas the call actually used, as plain JSON for the ledger."""
    config = {k: _plain(v) for k, v in scheduler.config.items() if not k.startswith("_")}
    sigmas = getattr(scheduler, "sigmas", None)
    return {**record, "class": type(scheduler).__name__, "config": config,
            "sigmas": [round(float(x), 6) for x in sigmas] if sigmas is not None else None}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, TypeError):
            return [_plain(v) for v in value.tolist()]
    return value
