"""Shared bits for the hosted-provider tests: request building and reference photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from portrait_studio.catalog import get_model
from portrait_studio.records import InputImage, Request

__all__ = ["get_model", "photo_file", "request"]


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
