"""Frozen values that cross boundaries: what we ask a provider for, and what comes back.

A `Request` is the output of `prompting.compile` (and of finishing operations): it is
complete and explicit (the seed is always set), so the same Request sent twice asks
for the same image. Its `idempotency_key` is derived from its content; the runner
uses it to never pay twice for the same image.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

__all__ = [
    "Cost",
    "InputImage",
    "LoraWeight",
    "Mode",
    "Request",
    "Result",
    "Ticket",
    "estimated_total",
    "new_id",
]

Mode = Literal["text-to-image", "image-to-image", "inpaint", "edit", "reference", "upscale"]
"""text-to-image: prompt only. image-to-image: an init image at a `denoise`.
inpaint: an image and a mask (white = repaint). edit: instruction editing (Kontext, FLUX.2).
reference: prompt plus reference images that guide identity or style (Ultra image_prompt,
FLUX.2 multi-reference, Redux). upscale: a hosted super-resolution model enlarges the init image."""

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str = "") -> str:
    """A sortable, unique id (ULID layout: 48-bit ms time + 80 random bits)."""
    n = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[n & 31])
        n >>= 5
    return prefix + "".join(reversed(chars))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Cost(_Frozen):
    """Money, in the provider's credits and in US dollars. BFL: 1 credit = $0.01."""

    credits: float = 0.0
    usd: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(credits=self.credits + other.credits, usd=round(self.usd + other.usd, 6))


class InputImage(_Frozen):
    """An image file sent with a request: init image, mask, or reference.

    `rights_id` points at the consent/rights record for a reference image of a person.
    """

    path: str
    sha256: str
    role: Literal["init", "mask", "reference", "identity", "style", "edit"] = "reference"
    rights_id: str | None = None

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], role: str = "reference", rights_id: str | None = None) -> InputImage:
        with open(path, "rb") as fh:
            data = fh.read()
        return cls(path=str(path), sha256=hashlib.sha256(data).hexdigest(), role=role, rights_id=rights_id)  # type: ignore[arg-type]

    def read(self) -> bytes:
        with open(self.path, "rb") as fh:
            return fh.read()


class LoraWeight(_Frozen):
    """A LoRA file (local) applied at `weight`; recorded in the ledger."""

    path: str
    weight: float = 1.0
    name: str | None = None
    sha256: str | None = None


class Request(_Frozen):
    """One image to make, fully specified. Produced by `prompting.compile`."""

    model: str
    provider: str
    mode: Mode = "text-to-image"
    prompt: str
    structured_prompt: dict[str, Any] | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    steps: int | None = None
    guidance: float | None = None
    true_cfg_scale: float | None = None
    seed: int
    output_format: Literal["png", "jpeg", "webp"] = "png"
    safety_tolerance: int | None = None
    raw: bool = False
    images: tuple[InputImage, ...] = ()
    mask: InputImage | None = None
    denoise: float | None = None
    """image-to-image / inpaint: how much of the init image may change (0 keeps it, 1 ignores it)."""
    reference_weight: float | None = None
    """reference mode: how strongly the reference images steer (Ultra `image_prompt_strength`)."""
    loras: tuple[LoraWeight, ...] = ()
    finetune_id: str | None = None
    finetune_strength: float | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    estimated_cost: Cost = Cost()
    run_id: str | None = None
    parent_id: str | None = None
    request_id: str = Field(default_factory=lambda: new_id("req_"))

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        """`idempotency_key` is derived, so a dumped Request can be read back."""
        if isinstance(data, dict) and "idempotency_key" in data:
            data = {k: v for k, v in data.items() if k != "idempotency_key"}
        if isinstance(data, dict) and "strength" in data:  # ledgers written before the split
            data = dict(data)
            legacy = data.pop("strength")
            if legacy is not None:
                data["reference_weight" if data.get("mode") == "reference" else "denoise"] = legacy
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def idempotency_key(self) -> str:
        """Hash of everything that determines the image (not ids, warnings or cost)."""
        payload = self.model_dump(
            exclude={"warnings", "estimated_cost", "request_id", "run_id", "parent_id", "idempotency_key"},
            mode="json",
        )
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    @property
    def megapixels(self) -> float:
        if self.width and self.height:
            return self.width * self.height / (1024 * 1024)
        return 1.0


class Ticket(_Frozen):
    """Proof that a provider accepted (and will charge for) a request.

    The runner stores it in the ledger before polling, so an interrupted run can
    re-poll (`Provider.resume`) instead of re-submitting.
    """

    request_id: str
    provider: str
    task_id: str
    polling_url: str | None = None
    accepted_at: float = Field(default_factory=time.time)
    cost: Cost | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Result(_Frozen):
    """A finished image and everything known about how it was made."""

    request_id: str
    provider: str
    model: str
    image: bytes = Field(repr=False, exclude=True)
    media_type: str = "image/png"
    seed: int | None = None
    provider_task_id: str | None = None
    cost: Cost = Cost()
    timings: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    sandbox: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()


def estimated_total(requests: Iterable[Request]) -> Cost:
    """What a set of requests is estimated to cost (plans, budgets, the cost column)."""
    total = Cost()
    for r in requests:
        total = total + r.estimated_cost
    return total
