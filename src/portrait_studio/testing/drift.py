"""Inject identity drift: a provider wrapper that returns another person for chosen requests.

Sandboxes always return the same (public-domain) face, so a series run against them never
drifts. To see the reset rule work, wrap the provider: chosen submissions (by order), or
requests whose prompt contains a phrase, come back as a photo of someone else (default:
face_recognition's biden.jpg), re-encoded in the request's size and format. Everything else
(acceptance, cost, sandbox marking) is the wrapped provider's.

    drifting = DriftingProvider(sandbox_provider, submissions={1, 3})
    drifting = DriftingProvider(local, when_prompt_contains="city street")
"""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path

from PIL import Image

from ..providers.base import OnAccepted, Provider
from ..records import Request, Result, Ticket

__all__ = ["DriftingProvider"]


class DriftingProvider(Provider):
    """Wraps `inner`; submission numbers in `submissions` (0-based) or matching prompts return `other_face`."""

    hosted = False

    def __init__(
        self,
        inner: Provider,
        *,
        submissions: Collection[int] = (),
        when_prompt_contains: str | None = None,
        other_face: str | Path | None = None,
    ) -> None:
        self.inner = inner
        self.provider_id = inner.provider_id  # type: ignore[misc]
        self.sandbox = getattr(inner, "sandbox", False)
        self.submissions = set(submissions)
        self.when_prompt_contains = when_prompt_contains
        self._other = Path(other_face) if other_face else None
        self.count = 0
        self.drifted: list[int] = []

    def check(self, request: Request) -> None:
        self.inner.check(request)

    def max_concurrency(self, model: str) -> int:
        return self.inner.max_concurrency(model)

    def _drifts(self, number: int, request: Request) -> bool:
        if number in self.submissions:
            return True
        return bool(self.when_prompt_contains) and self.when_prompt_contains in request.prompt  # type: ignore[operator]

    def _other_face(self, like: bytes, fmt: str) -> bytes:
        if self._other is None:
            from .photos import face_recognition_photos

            self._other = face_recognition_photos()["biden"]
        with Image.open(io.BytesIO(like)) as made:
            size = made.size
        with Image.open(self._other) as other:
            face = other.convert("RGB")
        # fit the whole photo (face included) inside the frame, on a plain backdrop
        scale = min(size[0] / face.width, size[1] / face.height)
        face = face.resize((max(1, round(face.width * scale)), max(1, round(face.height * scale))))
        canvas = Image.new("RGB", size, (128, 128, 128))
        canvas.paste(face, ((size[0] - face.width) // 2, (size[1] - face.height) // 2))
        face = canvas
        buffer = io.BytesIO()
        face.save(buffer, format={"jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}.get(fmt, "PNG"))
        return buffer.getvalue()

    async def submit(self, request: Request, on_accepted: OnAccepted | None = None) -> Result:
        number = self.count
        self.count += 1
        result = await self.inner.submit(request, on_accepted)
        if not self._drifts(number, request):
            return result
        self.drifted.append(number)
        fmt = result.media_type.removeprefix("image/")
        return result.model_copy(update={"image": self._other_face(result.image, fmt),
                                         "metadata": {**result.metadata, "drift_injected": True}})

    async def resume(self, ticket: Ticket, request: Request) -> Result:
        return await self.inner.resume(ticket, request)

    async def aclose(self) -> None:
        await self.inner.aclose()
