"""Shared bits for the hosted-provider tests: model routing and request building.

`get_model` is the catalog's once `portrait_studio.catalog` is in the tree; until then a
small table that follows the catalog contract (family, modes, routes[provider].model_id ...).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from portrait_studio.errors import CapabilityError
from portrait_studio.records import InputImage, Request


def _route(provider: str, model_id: str, edit: str | None = None, max_active: int | None = None) -> Any:
    return SimpleNamespace(provider=provider, model_id=model_id, edit_model_id=edit, pipeline=None,
                           max_active=max_active)


_ALL = ["text-to-image", "image-to-image", "inpaint", "edit", "reference"]
_FALLBACK: dict[str, Any] = {
    "flux-1.1-pro": SimpleNamespace(
        id="flux-1.1-pro", name="FLUX1.1 [pro]", family="pro11", modes=["text-to-image", "reference"],
        max_references=1, lora=False, finetune=False, negative_prompt="none",
        routes={"bfl": _route("bfl", "flux-pro-1.1", max_active=24),
                "fal": _route("fal", "fal-ai/flux-pro/v1.1"),
                "replicate": _route("replicate", "black-forest-labs/flux-1.1-pro")}),
    "flux-1.1-pro-ultra": SimpleNamespace(
        id="flux-1.1-pro-ultra", name="FLUX1.1 [pro] Ultra", family="ultra", modes=["text-to-image", "reference"],
        max_references=1, lora=False, finetune=True, negative_prompt="none",
        routes={"bfl": _route("bfl", "flux-pro-1.1-ultra", "flux-pro-1.1-ultra-finetuned", 24),
                "fal": _route("fal", "fal-ai/flux-pro/v1.1-ultra"),
                "replicate": _route("replicate", "black-forest-labs/flux-1.1-pro-ultra")}),
    "flux-2-pro": SimpleNamespace(
        id="flux-2-pro", name="FLUX.2 [pro]", family="flux2", modes=["text-to-image", "edit", "reference"],
        max_references=8, lora=False, finetune=False, negative_prompt="none",
        routes={"bfl": _route("bfl", "flux-2-pro", max_active=24),
                "fal": _route("fal", "fal-ai/flux-2-pro", "fal-ai/flux-2-pro/edit"),
                "replicate": _route("replicate", "black-forest-labs/flux-2-pro")}),
    "flux-2-flex": SimpleNamespace(
        id="flux-2-flex", name="FLUX.2 [flex]", family="flux2-flex", modes=["text-to-image", "edit", "reference"],
        max_references=8, lora=False, finetune=False, negative_prompt="none",
        routes={"bfl": _route("bfl", "flux-2-flex", max_active=24),
                "fal": _route("fal", "fal-ai/flux-2-flex", "fal-ai/flux-2-flex/edit"),
                "replicate": _route("replicate", "black-forest-labs/flux-2-flex")}),
    "flux-kontext-pro": SimpleNamespace(
        id="flux-kontext-pro", name="FLUX.1 Kontext [pro]", family="kontext", modes=["edit", "reference"],
        max_references=4, lora=False, finetune=False, negative_prompt="none",
        routes={"bfl": _route("bfl", "flux-kontext-pro", max_active=24),
                "fal": _route("fal", "fal-ai/flux-pro/kontext", "fal-ai/flux-pro/kontext/multi"),
                "replicate": _route("replicate", "black-forest-labs/flux-kontext-pro")}),
    "flux-kontext-max": SimpleNamespace(
        id="flux-kontext-max", name="FLUX.1 Kontext [max]", family="kontext", modes=["edit", "reference"],
        max_references=4, lora=False, finetune=False, negative_prompt="none",
        routes={"bfl": _route("bfl", "flux-kontext-max", max_active=6),
                "fal": _route("fal", "fal-ai/flux-pro/kontext/max", "fal-ai/flux-pro/kontext/max/multi"),
                "replicate": _route("replicate", "black-forest-labs/flux-kontext-max")}),
    "flux-fill-pro": SimpleNamespace(
        id="flux-fill-pro", name="FLUX.1 Fill [pro]", family="fill", modes=["inpaint"],
        max_references=1, lora=False, finetune=True, negative_prompt="none",
        routes={"bfl": _route("bfl", "flux-pro-1.0-fill", "flux-pro-1.0-fill-finetuned", 24),
                "fal": _route("fal", "fal-ai/flux-pro/v1/fill"),
                "replicate": _route("replicate", "black-forest-labs/flux-fill-pro")}),
    "flux-1-dev": SimpleNamespace(
        id="flux-1-dev", name="FLUX.1 [dev]", family="dev", modes=["text-to-image", "image-to-image"],
        max_references=1, lora=True, finetune=False, negative_prompt="true_cfg",
        routes={"bfl": _route("bfl", "flux-dev", max_active=24),
                "fal": _route("fal", "fal-ai/flux/dev", "fal-ai/flux/dev/image-to-image"),
                "replicate": _route("replicate", "black-forest-labs/flux-dev"),
                "local": _route("local", "black-forest-labs/FLUX.1-dev")}),
    "flux-1-schnell": SimpleNamespace(
        id="flux-1-schnell", name="FLUX.1 [schnell]", family="schnell", modes=["text-to-image"],
        max_references=0, lora=True, finetune=False, negative_prompt="none",
        routes={"fal": _route("fal", "fal-ai/flux/schnell"),
                "replicate": _route("replicate", "black-forest-labs/flux-schnell"),
                "local": _route("local", "black-forest-labs/FLUX.1-schnell")}),
}


def get_model(model: str) -> Any:
    try:
        from portrait_studio.catalog import get_model as catalog_get_model  # type: ignore[import-not-found]
    except ImportError:
        if model not in _FALLBACK:
            raise CapabilityError(f"unknown model {model!r}") from None
        return _FALLBACK[model]
    return catalog_get_model(model)


def request(model: str = "flux-1.1-pro", provider: str = "bfl", **fields: Any) -> Request:
    values: dict[str, Any] = {"prompt": "studio portrait of an astronaut, soft key light", "seed": 7,
                              "width": 768, "height": 1024, "output_format": "jpeg"}
    values.update(fields)
    return Request(model=model, provider=provider, **values)


def photo_file(tmp_path: Path, name: str = "ref.png", size: tuple[int, int] = (512, 512),
               role: str = "reference") -> InputImage:
    from portrait_studio.testing.photos import astronaut

    path = tmp_path / name
    astronaut().resize(size).save(path)
    return InputImage.from_path(path, role=role)
