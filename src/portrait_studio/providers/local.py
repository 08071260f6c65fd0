"""The local provider: FLUX on your own machine through Hugging Face diffusers.

    provider = LocalProvider(LocalProvider.Options(weights="/models/flux1-dev"), studio=studio)
    result = await provider.submit(request)

Which pipeline runs is read from the catalog (`spec.family`, `spec.routes["local"]`):

    family    base pipeline         text-to-image  image-to-image       inpaint              edit / reference
    dev       FluxPipeline          FluxPipeline   FluxImg2ImgPipeline  FluxInpaintPipeline  reference: Redux prior
    schnell   FluxPipeline          (as dev)
    fill      FluxFillPipeline      -              -                    FluxFillPipeline     -
    kontext   FluxKontextPipeline   yes            -                    -                    edit
    klein     Flux2KleinPipeline    yes            -                    -                    edit, multi-reference
    flux2     Flux2Pipeline         yes            -                    -                    edit, multi-reference

Weights are loaded once per process (see `local_runtime`), every other pipeline over the
same weights shares their modules via `from_pipe`. The blocking diffusers call runs in a
worker thread; `on_step(step, total)` reports progress and `cancel()` stops between steps.

Determinism: the initial noise comes from a CPU `torch.Generator` seeded with
`request.seed`, so the same seed, settings and weights give the same pixels on the same
machine; `Result.versions` records what decides whether it reproduces elsewhere.

Nothing here is paid for and nothing is accepted remotely, so `on_accepted` is never
called and there is nothing to `resume`.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from ..errors import CapabilityError, GenerationFailed, NotConfigured
from ..files import atomic_write_text
from ..records import Cost, LoraWeight, Request, Result
from .base import Billing, OnAccepted, Provider, ProviderOptions

if TYPE_CHECKING:
    from ..config import Studio
    from .local_runtime import LoadedWeights

__all__ = ["GenerationCancelled", "LicenceNotAccepted", "LocalOptions", "LocalProvider", "OnStep"]

OnStep = Callable[[int, int], None]
"""Progress callback: (steps done, total steps). Runs in the worker thread."""

DEFAULT_IMG2IMG_DENOISE = 0.3
"""Denoise for image-to-image when the request names none: 0.25-0.35 keeps the
reference's identity and layout while the prompt restyles it (1.0 ignores the image)."""
DEFAULT_INPAINT_DENOISE = 0.85
DEFAULT_TRUE_CFG = 4.0
DEFAULT_REDUX_WEIGHTS = "black-forest-labs/FLUX.1-Redux-dev"


class GenerationCancelled(GenerationFailed):
    """The user cancelled a local generation between steps."""


class LicenceNotAccepted(NotConfigured):
    """Non-commercial or gated weights whose licence the user has not accepted yet."""


class LocalOptions(ProviderOptions):
    """How to run FLUX locally. Every speed option is off by default; each is measured in bench/."""

    weights: str | None = Field(None, description="HF repo id or local folder; default: the catalog's model_id")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attention_backend: str | None = Field(None, description="diffusers backend: native, flash, sage, _native_cudnn")
    compile: bool = Field(False, description="torch.compile the repeated transformer blocks (first call slow)")
    quantize: Literal["fp8", "int8"] | None = Field(None, description="torchao weight quantization (GPU only)")
    offload: Literal["model", "sequential"] | None = Field(None, description="CPU offload for small GPUs")
    cache: Literal["fbc", "taylorseer", "magcache"] | None = Field(None, description="step cache")
    cache_params: dict[str, Any] = Field(default_factory=dict, description="e.g. {'threshold': 0.12}")
    max_sequence_length: int | None = Field(None, ge=16, le=512)
    redux_weights: str = Field(DEFAULT_REDUX_WEIGHTS, description="FLUX.1 Redux prior for reference mode")
    sampler: Literal["euler", "dpm++ 2m", "dpm++ 2m karras"] | None = Field(
        None, description="None/euler: FlowMatch Euler; DPM++ 2M [Karras] on flow sigmas (samplers.py)")


@dataclass(frozen=True)
class _Family:
    base: str
    modes: dict[str, str]  # mode -> pipeline class ("redux" = prior + base)
    steps: int
    guidance: float | None
    negative: Literal["true_cfg", "embeds"] | None  # how a negative prompt reaches the model


_FLUX1_MODES = {"text-to-image": "FluxPipeline", "image-to-image": "FluxImg2ImgPipeline",
                "inpaint": "FluxInpaintPipeline", "reference": "redux"}
_EDITS = ("text-to-image", "edit", "reference")
_FAMILIES: dict[str, _Family] = {
    "dev": _Family("FluxPipeline", _FLUX1_MODES, 28, 3.5, "true_cfg"),
    "schnell": _Family("FluxPipeline", _FLUX1_MODES, 4, None, "true_cfg"),
    "fill": _Family("FluxFillPipeline", {"inpaint": "FluxFillPipeline"}, 28, 30.0, None),
    "kontext": _Family("FluxKontextPipeline", dict.fromkeys(_EDITS, "FluxKontextPipeline"), 28, 2.5, "true_cfg"),
    # klein: real CFG (two calls per step) when guidance > 1 on the undistilled base weights
    "klein": _Family("Flux2KleinPipeline", dict.fromkeys(_EDITS, "Flux2KleinPipeline"), 4, 4.0, "embeds"),
    "flux2": _Family("Flux2Pipeline", dict.fromkeys(_EDITS, "Flux2Pipeline"), 28, 4.0, None),
}


class LocalProvider(Provider):
    """FLUX.1 / FLUX.2 through diffusers on this machine (CPU works; a CUDA GPU is what makes it usable)."""

    provider_id: ClassVar[str] = "local"
    key_env_var: ClassVar[str | None] = None
    hosted: ClassVar[bool] = False
    billing: ClassVar[Billing] = "free"
    Options: ClassVar[type[ProviderOptions]] = LocalOptions

    @classmethod
    def create(cls, studio: Any, **options: Any) -> LocalProvider:
        """Built by `open_providers`: options from config.toml / --weights, licences from the studio."""
        return cls({k: v for k, v in options.items() if v is not None}, studio=studio)

    def __init__(
        self,
        options: LocalOptions | dict[str, Any] | None = None,
        *,
        studio: Studio | None = None,
        on_step: OnStep | None = None,
    ) -> None:
        self.options = options if isinstance(options, LocalOptions) else LocalOptions.model_validate(options or {})
        self._licence_file = studio.home / "licences.json" if studio is not None else None
        self._accepted: set[str] = set()
        self.on_step = on_step
        self._running: set[threading.Event] = set()
        self._running_lock = threading.Lock()

    # --- licences ---------------------------------------------------------------------
    def licence_notice(self, model: str) -> str | None:
        """The licence to show before `model`'s first local use; None when none is needed or it was accepted.

        Non-commercial weights (FLUX.1 [dev] and its Fill/Kontext, FLUX.2 [dev], klein 9B)
        need it; their Hugging Face repositories are gated as well.
        """
        if self.licence_accepted(model):
            return None
        spec = _spec(model)
        route = spec.routes.get("local")
        repo = route.model_id if route is not None else ""
        return (f"{spec.name}: {spec.licence} Licence: https://huggingface.co/{repo}/blob/main/LICENSE.md. "
                f"The weights are gated: accept the terms on https://huggingface.co/{repo} and run "
                "'hf auth login' before the first download.")

    def licence_accepted(self, model: str) -> bool:
        if not _non_commercial(model) or model in self._accepted:
            return True
        return model in self._read_acceptances()

    def accept_licence(self, model: str) -> None:
        """Record that the user accepted `model`'s licence (in <studio>/licences.json when a studio is given)."""
        self._accepted.add(model)
        if self._licence_file is None:
            return
        accepted = self._read_acceptances()
        accepted[model] = {"licence": _spec(model).licence, "accepted_at": time.time()}
        atomic_write_text(self._licence_file, json.dumps(accepted, indent=2))

    def _read_acceptances(self) -> dict[str, Any]:
        if self._licence_file is None or not self._licence_file.exists():
            return {}
        return dict(json.loads(self._licence_file.read_text()))

    # --- capability -------------------------------------------------------------------
    def max_concurrency(self, model: str) -> int:
        return 1  # one pipeline, one GPU: calls are serialised anyway

    def check(self, request: Request) -> None:
        """Capability and configuration, before anything is loaded: mode, options, weights path."""
        super().check(request)
        spec, family = self._family(request.model)
        options = self._options_for(request)
        if request.mode not in family.modes:
            raise CapabilityError(f"the local {spec.name} pipeline cannot do {request.mode}",
                                  hint=f"locally it does: {', '.join(family.modes)}")
        if request.negative_prompt and (spec.negative_prompt == "none" or family.negative is None):
            raise CapabilityError(f"{spec.name} takes no negative prompt locally",
                                  hint="describe what you want instead, or pick FLUX.1 dev/schnell/Kontext")
        if request.mode == "reference" and family.modes["reference"] == "redux" and len(request.images) > 1:
            raise CapabilityError("FLUX.1 Redux takes one image prompt", hint="use FLUX.2 for multi-reference")
        if request.mode in ("image-to-image", "inpaint", "edit", "reference") and not request.images:
            raise CapabilityError(f"{request.mode} needs an input image", hint="add an image to the request")
        if request.mode == "inpaint" and request.mask is None:
            raise CapabilityError("inpaint needs a mask (white = repaint)", hint="add a mask image")
        if options.quantize or options.offload:
            from .local_runtime import resolve_device

            if resolve_device(options.device) != "cuda":
                what = f"quantize={options.quantize}" if options.quantize else f"offload={options.offload}"
                raise CapabilityError(f"{what} needs a CUDA GPU; this run is on CPU",
                                      hint="drop the option on CPU, or run on a GPU")
        self._check_sampler(spec, request, options)
        if request.loras and not spec.lora:
            raise CapabilityError(f"{spec.name} takes no LoRA", hint="remove the LoRA or pick a model that does")
        self._weights(request, options)
        if not self.licence_accepted(request.model):
            raise LicenceNotAccepted(
                f"{request.model}: its licence is not accepted yet ({_spec(request.model).licence})", provider="local",
                hint=f"run 'portrait local licence {request.model}' to read and accept it, or pass --accept-licence")

    @staticmethod
    def _check_sampler(spec: Any, request: Request, options: LocalOptions) -> None:
        from ..samplers import DEFAULT_SAMPLER, SAMPLERS

        if options.sampler in (None, DEFAULT_SAMPLER):
            return
        label = SAMPLERS[options.sampler].label
        route = spec.routes.get("local")
        if route is None or options.sampler not in route.samplers:
            why = route.sampler_note if route is not None and route.sampler_note else "it runs only Euler"
            raise CapabilityError(f"the local {spec.name} pipeline cannot run the {label} sampler ({why})",
                                  hint="drop the sampler, or use flux-1-dev, flux-2-dev or klein locally")
        if request.mode in ("image-to-image", "inpaint"):
            raise CapabilityError(f"the {label} sampler cannot start {request.mode} from a partly noised image "
                                  "(diffusers' DPM-Solver has no scale_noise)", hint="use the Euler sampler for this")

    def _family(self, model: str) -> tuple[Any, _Family]:
        spec = _spec(model)
        family = _FAMILIES.get(spec.family)
        if family is None:
            raise CapabilityError(f"{spec.name} has no local pipeline", hint="use a hosted provider")
        return spec, family

    def _options_for(self, request: Request) -> LocalOptions:
        """Provider options, overridden by matching keys of `request.options` (e.g. --weights)."""
        overrides = {k: v for k, v in request.options.items() if k in LocalOptions.model_fields}
        if not overrides:
            return self.options
        return LocalOptions.model_validate({**self.options.model_dump(exclude_unset=True), **overrides})

    def _weights(self, request: Request, options: LocalOptions) -> str:
        from .local_runtime import resolve_weights

        spec = self._family(request.model)[0]
        route = spec.routes.get("local")
        weights = options.weights or (route.model_id if route is not None else None)
        if not weights:
            raise NotConfigured(f"no local weights for {spec.name}", provider="local",
                                hint="pass --weights with a diffusers folder or a Hugging Face repo id")
        resolve_weights(weights)
        return weights

    # --- cancellation -----------------------------------------------------------------
    def cancel(self) -> None:
        """Stop every generation in flight after its current step (thread-safe)."""
        with self._running_lock:
            for event in self._running:
                event.set()

    # --- generation -------------------------------------------------------------------
    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        self.check(request)
        return await asyncio.to_thread(self._generate, request)

    def _generate(self, request: Request) -> Result:
        from .local_runtime import load_weights, resolve_device, resolve_dtype

        spec, family = self._family(request.model)
        options = self._options_for(request)
        weights = self._weights(request, options)
        route = spec.routes.get("local")
        base_class = (route.pipeline if route is not None and route.pipeline else None) or family.base
        device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype, device)
        started = time.perf_counter()
        loaded = load_weights(base_class, weights, device=device, dtype=dtype,
                              attention_backend=options.attention_backend, compile_blocks=options.compile,
                              quantize=options.quantize, offload=options.offload)
        load_s = time.perf_counter() - started
        cancelled = threading.Event()
        with self._running_lock:
            self._running.add(cancelled)
        try:
            with loaded.lock:
                image, meta = _run(loaded, family, request, options, device, self.on_step, cancelled)
        finally:
            with self._running_lock:
                self._running.discard(cancelled)
        if meta.get("interrupted"):
            raise GenerationCancelled(f"cancelled after step {meta['steps_done']} of {meta['steps']}",
                                      provider="local", hint="run it again to make the image")
        meta["pipeline_base"] = base_class
        versions = _versions(loaded, weights, dtype, device, request.loras)
        versions["scheduler"] = meta["scheduler"]["class"]
        return Result(
            request_id=request.request_id, provider="local", model=request.model,
            image=_encode(image, request.output_format), media_type=f"image/{request.output_format}",
            seed=request.seed, cost=Cost(),
            timings={"load_s": round(load_s, 4), "generate_s": round(time.perf_counter() - started - load_s, 4)},
            metadata=meta, versions=versions,
        )


# --- one pipeline call (worker thread) -----------------------------------------------
def _run(
    loaded: LoadedWeights, family: _Family, request: Request, options: LocalOptions, device: str,
    on_step: OnStep | None, cancelled: threading.Event,
) -> tuple[Any, dict[str, Any]]:
    import torch

    from .local_runtime import derived_pipeline, make_cache_config, make_scheduler, scheduler_record

    pipeline_class = family.modes[request.mode]
    redux = pipeline_class == "redux"
    pipe = derived_pipeline(loaded, loaded.base.__class__.__name__ if redux else pipeline_class)
    steps = request.steps or family.steps
    kwargs = _call_arguments(pipe, family, request, options, steps)
    if request.negative_prompt and family.negative == "embeds":
        kwargs.update(_klein_negative(pipe, request, kwargs))
    if redux:
        kwargs.update(_redux_embeddings(loaded, request, options, device))
    adapters = _apply_loras(loaded, request.loras)

    meta: dict[str, Any] = {"pipeline": type(pipe).__name__ + (" + FluxPriorReduxPipeline" if redux else ""),
                            "steps": steps, "steps_done": 0}
    total = kwargs["num_inference_steps"]

    def step_end(p: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        meta["steps_done"] = i + 1
        if on_step is not None:
            on_step(i + 1, total)
        if cancelled.is_set():
            p._interrupt = True  # diffusers stops the loop (and still decodes); we discard the image
            meta["interrupted"] = True
        return tensors

    calls = [0]
    own_scheduler = pipe.scheduler
    scheduler, scheduler_info = make_scheduler(options.sampler, own_scheduler)
    hook = pipe.transformer.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    if options.cache:
        pipe.transformer.enable_cache(make_cache_config(options.cache, options.cache_params, steps))
    try:
        pipe.scheduler = scheduler  # for this call only; the shared pipeline keeps its own
        out = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(request.seed),
                   callback_on_step_end=step_end)
    except Exception as exc:
        raise GenerationFailed(f"{type(pipe).__name__} failed: {exc}", provider="local") from exc
    finally:
        pipe.scheduler = own_scheduler
        hook.remove()
        if options.cache:
            pipe.transformer.disable_cache()
    meta["scheduler"] = scheduler_record(scheduler, scheduler_info)
    true_cfg = bool(request.negative_prompt)
    meta.update({
        "width": kwargs.get("width"), "height": kwargs.get("height"),
        "guidance": kwargs.get("guidance_scale"), "denoise": kwargs.get("strength"),
        "true_cfg": true_cfg,
        "true_cfg_scale": kwargs.get("true_cfg_scale", kwargs.get("guidance_scale")) if true_cfg else None,
        "transformer_calls": calls[0],
        "transformer_calls_per_step": round(calls[0] / max(meta["steps_done"], 1), 3),
        "max_sequence_length": kwargs.get("max_sequence_length"),
        "loras": adapters, "cache": options.cache, "cache_params": options.cache_params or None,
        "attention_backend": options.attention_backend, "compile": options.compile,
        "quantize": options.quantize, "offload": options.offload,
    })
    return out.images[0], meta


def _call_arguments(pipe: Any, family: _Family, request: Request, options: LocalOptions, steps: int) -> dict[str, Any]:
    """The keyword arguments of one diffusers call, from the request and the family defaults."""
    images = [_open(i.path) for i in request.images]
    width, height = _size(request, images[0] if images else None)
    kwargs: dict[str, Any] = {"prompt": request.prompt, "width": width, "height": height,
                              "num_inference_steps": steps}
    guidance = request.guidance if request.guidance is not None else family.guidance
    if guidance is not None:
        kwargs["guidance_scale"] = guidance
    if options.max_sequence_length:
        kwargs["max_sequence_length"] = options.max_sequence_length
    if request.negative_prompt and family.negative == "true_cfg":
        kwargs["negative_prompt"] = request.negative_prompt
        kwargs["true_cfg_scale"] = request.true_cfg_scale or DEFAULT_TRUE_CFG
    name = type(pipe).__name__
    if request.mode == "image-to-image":
        kwargs["image"] = images[0]
        kwargs["strength"] = request.denoise if request.denoise is not None else DEFAULT_IMG2IMG_DENOISE
    elif request.mode == "inpaint":
        assert request.mask is not None
        kwargs["image"] = images[0]
        kwargs["mask_image"] = _open(request.mask.path, "L")
        if name != "FluxFillPipeline" or request.denoise is not None:
            kwargs["strength"] = request.denoise if request.denoise is not None else DEFAULT_INPAINT_DENOISE
    elif request.mode in ("edit", "reference") and name.startswith("Flux2"):
        kwargs["image"] = images  # multi-reference
    elif name.startswith("FluxKontext") and images:  # Kontext: pin the size, or it resizes to ~1 MP "preferred" resolutions
        kwargs.update(image=images[0], max_area=width * height, _auto_resize=False)
    return kwargs


def _klein_negative(pipe: Any, request: Request, kwargs: dict[str, Any]) -> dict[str, Any]:
    """FLUX.2 klein runs real CFG against an empty prompt; a negative prompt replaces it via embeddings."""
    if pipe.config.is_distilled:
        raise CapabilityError("these klein weights are step-distilled and run no CFG, so no negative prompt",
                              hint="use the undistilled klein base weights, or drop the negative prompt")
    scale = request.true_cfg_scale or kwargs.get("guidance_scale") or DEFAULT_TRUE_CFG
    if scale <= 1.0:
        scale = DEFAULT_TRUE_CFG
    embeds, _ = pipe.encode_prompt(prompt=request.negative_prompt,
                                   max_sequence_length=kwargs.get("max_sequence_length", 512))
    return {"negative_prompt_embeds": embeds, "guidance_scale": scale}


def _redux_embeddings(loaded: LoadedWeights, request: Request, options: LocalOptions, device: str) -> dict[str, Any]:
    """FLUX.1 Redux: the image prompt becomes extra text tokens; the base pipeline then runs on them."""
    from .local_runtime import resolve_weights

    key = "redux:" + options.redux_weights
    prior = loaded.derived.get(key)
    if prior is None:
        import diffusers

        where, _ = resolve_weights(options.redux_weights)
        base = loaded.base
        prior = diffusers.FluxPriorReduxPipeline.from_pretrained(
            where, dtype=base.transformer.dtype, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
            text_encoder_2=base.text_encoder_2, tokenizer_2=base.tokenizer_2).to(device)
        loaded.derived[key] = prior
    embeds = prior(_open(request.images[0].path), prompt=request.prompt)
    return {"prompt": None, "prompt_embeds": embeds.prompt_embeds,
            "pooled_prompt_embeds": embeds.pooled_prompt_embeds}


def _apply_loras(loaded: LoadedWeights, loras: tuple[LoraWeight, ...]) -> list[dict[str, Any]]:
    """Activate exactly the request's LoRAs at their weights (loading each file once); none = all off."""
    from ..records import InputImage

    pipe = loaded.base
    names, weights, report = [], [], []
    for lora in loras:
        path = Path(lora.path).expanduser()
        if not path.is_file():
            raise NotConfigured(f"LoRA file not found: {path}", provider="local",
                                hint="check the path (a .safetensors file saved by diffusers or kohya)")
        sha = lora.sha256 or InputImage.from_path(path).sha256
        name = f"lora_{sha[:12]}"
        if name not in loaded.adapters:
            try:
                pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
            except Exception as exc:
                raise CapabilityError(f"could not load LoRA {path.name}: {exc}",
                                      hint="is it a LoRA for this model family?") from exc
            loaded.adapters[name] = str(path)
        names.append(name)
        weights.append(lora.weight)
        report.append({"path": str(path), "name": lora.name or path.stem, "weight": lora.weight, "sha256": sha})
    if names:
        pipe.enable_lora()
        pipe.set_adapters(names, adapter_weights=weights)
    elif loaded.adapters:
        pipe.disable_lora()
    return report


# --- helpers --------------------------------------------------------------------------
def _spec(model: str) -> Any:
    from ..catalog import get_model

    return get_model(model)


def _non_commercial(model: str) -> bool:
    return "non-commercial" in _spec(model).licence.lower()


def _open(path: str, mode: str = "RGB") -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert(mode)


def _size(request: Request, image: Any | None) -> tuple[int, int]:
    """Width and height snapped down to multiples of 16 (VAE factor 8 x 2x2 packing)."""
    width = request.width or (image.width if image is not None else 1024)
    height = request.height or (image.height if image is not None else 1024)
    return max(16, width // 16 * 16), max(16, height // 16 * 16)


def _encode(image: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format={"jpeg": "JPEG", "webp": "WEBP"}.get(fmt, "PNG"))
    return buffer.getvalue()


def _versions(loaded: LoadedWeights, weights: str, dtype: Any, device: str,
              loras: tuple[LoraWeight, ...]) -> dict[str, str]:
    from .local_runtime import runtime_versions

    versions = runtime_versions()
    versions.update(dtype=str(dtype).removeprefix("torch."), device=device, weights=weights,
                    model_revision=loaded.revision)
    if loras:
        import peft

        versions["peft"] = peft.__version__
    return versions
