"""Who is in the picture: a 128-d face embedding per image and a distance to a series' anchor.

The embedding is dlib's ResNet face descriptor (face-recognition-models ships the weights,
so nothing downloads): detect faces with dlib's HOG detector, align with the 68-point shape
predictor, describe the largest face. Two photos of one person lie close (Euclidean distance),
two people lie far apart; `IdentityThresholds` says where "close" ends, calibrated on real
photos (`bench/bench_identity.py` recomputes the numbers).

A series runner calls `measure_drift(anchor, images)` after each shot; a shot without a
detectable face is reported as `no_face`, never as a pass.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from .errors import CheckError, NotConfigured

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_THRESHOLDS",
    "FaceEmbedding",
    "IdentityReport",
    "IdentityThresholds",
    "ImageInput",
    "ShotIdentity",
    "anchor_embedding",
    "face_embedding",
    "face_embeddings",
    "identity_distance",
    "measure_drift",
    "measure_shot",
]

ImageInput = Image.Image | str | Path | np.ndarray
"""A PIL image, a path to an image file, or an RGB(A)/grey uint8 array."""

MIN_DETECTION_SCORE = 0.3
"""HOG detections scoring below this are ignored. Every face in the calibration photos (the
Obamas, Biden, the astronaut, six people in t1.jpg) scores 0.68–2.7; the false hits seen score
-0.22 to 0.12 (the highest: the astronaut's mission patch, when upsampled)."""

_DETECT_MAX_SIDE = 1024
"""Detection runs on a copy no larger than this (a 2,300 px photo costs 0.3 s at full size);
landmarks and the descriptor use the full-resolution image."""


class FaceEmbedding(BaseModel):
    """One face: its 128-d descriptor, its box in the image's pixels, and the detector's score."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vector: tuple[float, ...] = Field(min_length=128, max_length=128)
    box: tuple[int, int, int, int] = Field(description="left, top, right, bottom in image pixels")
    score: float = Field(description="HOG detector score; higher is more face-like")

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left) * max(0, bottom - top)


class IdentityThresholds(BaseModel):
    """Where "the same person" ends, in dlib descriptor distance.

    - `distance <= drift_warn`: pass, as close as real photos of one person get.
    - `drift_warn < distance <= same_person_max`: pass with a drift warning (the face is moving
      away from the anchor; the workflow's advice is to reset before it crosses the line).
    - `distance > same_person_max`: fail, probably someone else.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    same_person_max: float = Field(gt=0)
    drift_warn: float = Field(gt=0)

    def verdict(self, distance: float) -> Literal["pass", "warn", "fail"]:
        if distance > self.same_person_max:
            return "fail"
        return "warn" if distance > self.drift_warn else "pass"


# Calibration (bench/bench_identity.py; 13 faces, 78 pairs; HOG + 68-point alignment):
#   same person, 10 pairs (obama, obama2, obama3, obama_partial_face, obama_partial_face2): 0.213–0.432
#   different people, 68 pairs (those vs biden, the astronaut and 6 faces cropped from insightface's
#   t1.jpg, and all of those vs each other): 0.618–0.971 (closest: two cast members in t1.jpg)
#   separation (min different - max same) = 0.186; gap midpoint 0.525.
# same_person_max sits at the midpoint of the gap; drift_warn just above the largest same-person
# distance measured, so a warning means "further from the anchor than any real photo pair was".
DEFAULT_THRESHOLDS = IdentityThresholds(same_person_max=0.52, drift_warn=0.44)


class ShotIdentity(BaseModel):
    """The identity verdict for one shot of a series. `passed` is False for `no_face`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shot_index: int
    distance: float | None
    status: Literal["pass", "warn", "fail", "no_face"]
    face_box: tuple[int, int, int, int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, value: Any) -> Any:
        # `passed` is derived from `status`; it is written to JSON and ignored when read back
        if isinstance(value, dict) and "passed" in value:
            value = {k: v for k, v in value.items() if k != "passed"}
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.status in ("pass", "warn")


class IdentityReport(BaseModel):
    """Identity distance to the anchor for each shot of a series, in shot order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thresholds: IdentityThresholds
    shots: tuple[ShotIdentity, ...]

    @property
    def distances(self) -> list[float | None]:
        """Distance per shot; None where no face was found (that shot did not pass)."""
        return [s.distance for s in self.shots]

    @property
    def all_passed(self) -> bool:
        return all(s.passed for s in self.shots)

    @property
    def first_failure(self) -> ShotIdentity | None:
        return next((s for s in self.shots if not s.passed), None)


# --- models: loaded once per process ------------------------------------------------------

_lock = threading.Lock()  # dlib's objects are not documented as thread-safe; the web studio is threaded


def _models_dir() -> Path:
    # face_recognition_models' __init__ imports pkg_resources (gone from new setuptools):
    # locate the package without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise NotConfigured(
            "face-recognition-models is not installed; identity checks need its dlib weights",
            hint="pip install --no-deps face-recognition-models==0.3.0",
        )
    return Path(spec.origin).parent / "models"


@cache
def _models() -> tuple[Any, Any, Any]:
    import dlib

    models = _models_dir()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
    encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    return detector, predictor, encoder


# --- embedding ------------------------------------------------------------------------------


def _rgb_array(image: ImageInput) -> NDArray[np.uint8]:
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            raise CheckError(f"expected a uint8 image array, got {array.dtype}")
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        elif array.ndim == 3 and array.shape[2] == 4:
            array = array[:, :, :3]
        if array.ndim != 3 or array.shape[2] != 3:
            raise CheckError(f"expected an HxWx3 image array, got shape {array.shape}")
        return np.ascontiguousarray(array)
    if isinstance(image, str | Path):
        try:
            with Image.open(image) as opened:
                pil = ImageOps.exif_transpose(opened)
                pil.load()
        except OSError as exc:
            raise CheckError(f"cannot read image {image}: {exc}", hint="pass a PNG/JPEG/WebP file") from exc
    else:
        pil = image
    return np.ascontiguousarray(np.asarray(pil.convert("RGB"), dtype=np.uint8))


def _detect(detector: Any, rgb: NDArray[np.uint8]) -> list[tuple[tuple[int, int, int, int], float]]:
    """Boxes (in `rgb`'s pixels) and scores of faces scoring at least MIN_DETECTION_SCORE.

    Tries without upsampling first (fast; finds faces from ~80 px), then upsampled once for
    small faces.
    """
    height, width = rgb.shape[:2]
    factor = min(1.0, _DETECT_MAX_SIDE / max(height, width))
    small = rgb
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
    for upsample in (0, 1):
        rects, scores, _ = detector.run(small, upsample, MIN_DETECTION_SCORE)
        found = [
            (
                (
                    max(0, math.floor(r.left() / factor)),
                    max(0, math.floor(r.top() / factor)),
                    min(width, math.ceil((r.right() + 1) / factor)),
                    min(height, math.ceil((r.bottom() + 1) / factor)),
                ),
                float(s),
            )
            for r, s in zip(rects, scores)
            if s >= MIN_DETECTION_SCORE
        ]
        if found:
            return found
    return []


def face_embeddings(image: ImageInput) -> list[FaceEmbedding]:
    """Every detected face, largest first."""
    import dlib

    rgb = _rgb_array(image)
    with _lock:
        detector, predictor, encoder = _models()
        faces = []
        for box, score in _detect(detector, rgb):
            rect = dlib.rectangle(*box[:2], box[2] - 1, box[3] - 1)
            shape = predictor(rgb, rect)
            vector = encoder.compute_face_descriptor(rgb, shape, 0)
            faces.append(FaceEmbedding(vector=tuple(float(v) for v in vector), box=box, score=score))
    return sorted(faces, key=lambda f: f.area, reverse=True)


def face_embedding(image: ImageInput) -> FaceEmbedding | None:
    """The largest face's embedding, or None when no face scores above the detector threshold."""
    faces = face_embeddings(image)
    return faces[0] if faces else None


def anchor_embedding(image: ImageInput) -> FaceEmbedding:
    """The anchor headshot's embedding; raises CheckError when it shows no detectable face."""
    face = face_embedding(image)
    if face is None:
        name = f" {image}" if isinstance(image, str | Path) else ""
        raise CheckError(
            f"no face found in the anchor image{name}",
            hint="use a clear, front-facing headshot where the face is at least ~80 px wide",
        )
    return face


def identity_distance(a: FaceEmbedding, b: FaceEmbedding) -> float:
    """Euclidean distance between two descriptors: ~0.2–0.4 same person, ≳0.6 different people."""
    return float(np.linalg.norm(np.asarray(a.vector) - np.asarray(b.vector)))


# --- series drift -----------------------------------------------------------------------------


def measure_shot(
    anchor: FaceEmbedding,
    image: ImageInput,
    shot_index: int,
    thresholds: IdentityThresholds = DEFAULT_THRESHOLDS,
) -> ShotIdentity:
    """The identity verdict of one shot against the anchor."""
    face = face_embedding(image)
    if face is None:
        return ShotIdentity(shot_index=shot_index, distance=None, status="no_face")
    distance = identity_distance(anchor, face)
    return ShotIdentity(
        shot_index=shot_index,
        distance=round(distance, 4),
        status=thresholds.verdict(distance),
        face_box=face.box,
    )


def measure_drift(
    anchor: FaceEmbedding,
    images: Sequence[ImageInput],
    *,
    thresholds: IdentityThresholds = DEFAULT_THRESHOLDS,
    start_index: int = 0,
) -> IdentityReport:
    """Distance to the anchor for each image (shots numbered from `start_index`)."""
    shots = tuple(measure_shot(anchor, img, start_index + i, thresholds) for i, img in enumerate(images))
    return IdentityReport(thresholds=thresholds, shots=shots)
