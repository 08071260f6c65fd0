"""One analysis per image, shared by every check and by the region masks used for fixing.

`analyze(image)` runs the vision models once (mediapipe 0.10.21, whose wheel ships its
.tflite files, so nothing downloads) and returns an `Analysis`:

- faces: mediapipe full-range face detection on the whole image, then the 478-point face
  mesh (with iris, `refine_landmarks=True`) on a crop around each face, so small faces in
  group shots still get a mesh. Points are in image pixels (x, y, z); z is depth in
  pixels, smaller is nearer the camera.
- hands: mediapipe hands, 21 points each, with handedness.
- person_mask: selfie segmentation (0..1 float), skin_mask: pixels whose colour matches
  the faces' own skin (cheeks and forehead), inside the person.
- optional dlib 68-point landmarks (`analyze(..., dlib68=True)`).

Landmark groups (the public `*_IDX` tuples) are ordered outlines in mediapipe's face-mesh
numbering; mediapipe's LEFT means the subject's left, which is on the image's right.
Build polygon masks with `Face.mask(group, shape)` or `Analysis.region_mask(group)`.

Big photos cost what a small one does: faces, hands and the person are found on a working copy
of at most `WORK_SIDE` pixels a side, each face's mesh is fitted on a crop of the native pixels,
and every coordinate stays in native pixels.

Models load once per process; `warm_up()` starts loading them in a daemon thread (the first
`analyze` then waits for it). Native log lines are silenced with `quiet.native_quiet()`.
`analyze` is thread-safe: each model is not re-entrant, so each has its own lock, and checks in
several threads overlap on different models (one image's hands while another's face is found; the
graphs release the GIL) instead of queueing for all four. A second copy of the models would cost
about 140 MB for the few milliseconds each model runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
from PIL import Image

from .errors import CheckError

__all__ = [
    "CHEEK_L_IDX",
    "CHEEK_R_IDX",
    "FACE_OVAL_IDX",
    "FOREHEAD_IDX",
    "HAND_FINGERS",
    "INNER_MOUTH_IDX",
    "LEFT_EYEBROW_IDX",
    "LEFT_EYE_IDX",
    "LEFT_IRIS_CENTER",
    "LEFT_IRIS_IDX",
    "LIPS_OUTER_IDX",
    "RIGHT_EYEBROW_IDX",
    "RIGHT_EYE_IDX",
    "RIGHT_IRIS_CENTER",
    "RIGHT_IRIS_IDX",
    "Analysis",
    "Face",
    "Hand",
    "analyze",
    "face_skin",
    "load_image",
    "warm_up",
    "working_copy",
]

# --- face-mesh landmark groups (ordered outlines; subject's left = image right) -----------
LEFT_EYE_IDX: tuple[int, ...] = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
"""Subject's left eye lid outline (image right); 263 outer corner, 362 inner corner."""
RIGHT_EYE_IDX: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
"""Subject's right eye lid outline (image left); 33 outer corner, 133 inner corner."""
LEFT_IRIS_IDX: tuple[int, ...] = (474, 475, 476, 477)
RIGHT_IRIS_IDX: tuple[int, ...] = (469, 470, 471, 472)
"""Iris rim points (right, top, left, bottom order around the circle); centres are below."""
LEFT_IRIS_CENTER = 473
RIGHT_IRIS_CENTER = 468
LIPS_OUTER_IDX: tuple[int, ...] = (
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
)
"""Outer lip outline (the whole mouth, lips included)."""
INNER_MOUTH_IDX: tuple[int, ...] = (
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95,
)
"""Inner lip outline: the mouth opening, where teeth and tongue show."""
FACE_OVAL_IDX: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
    148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
"""Face outline from forehead (10) round the jaw to the chin (152) and back."""
LEFT_EYEBROW_IDX: tuple[int, ...] = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
RIGHT_EYEBROW_IDX: tuple[int, ...] = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
CHEEK_L_IDX: tuple[int, ...] = (347, 346, 352, 411, 425, 266, 330)
"""Subject's left cheek patch below the eye (image right): plain skin for texture and tone."""
CHEEK_R_IDX: tuple[int, ...] = (118, 117, 123, 187, 205, 36, 101)
"""Subject's right cheek patch below the eye (image left)."""
FOREHEAD_IDX: tuple[int, ...] = (109, 10, 338, 337, 336, 9, 107, 108)
"""Forehead patch above the brows."""
NOSE_TIP = 1
CHIN = 152

HAND_FINGERS: dict[str, tuple[int, int, int, int]] = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}
"""Hand landmark chains from the knuckle (or thumb base) to the tip; 0 is the wrist."""

Box = tuple[int, int, int, int]
T = TypeVar("T")


@dataclass(frozen=True)
class Face:
    """One face: detector box, 478 mesh points (x, y, z in pixels) or None if the mesh failed."""

    box: Box
    score: float
    landmarks: np.ndarray | None = None
    dlib68: np.ndarray | None = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    def points(self, group: tuple[int, ...] | list[int]) -> np.ndarray:
        """(n, 2) pixel coordinates of a landmark group."""
        if self.landmarks is None:
            raise CheckError("this face has no mesh landmarks")
        return self.landmarks[list(group), :2]

    def mask(self, group: tuple[int, ...], shape: tuple[int, int]) -> np.ndarray:
        """Filled polygon of a landmark group as a bool mask of `shape` (h, w)."""
        import cv2

        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.round(self.points(group)).astype(np.int32)], (1,))
        return m.astype(bool)

    def iris(self, side: str) -> tuple[np.ndarray, float]:
        """Iris centre (x, y) and radius in pixels for `side` 'left' or 'right' (subject's)."""
        center_i, rim = (LEFT_IRIS_CENTER, LEFT_IRIS_IDX) if side == "left" else (RIGHT_IRIS_CENTER, RIGHT_IRIS_IDX)
        c = self.points([center_i])[0]
        r = float(np.mean(np.linalg.norm(self.points(rim) - c, axis=1)))
        return c, r

    def eye(self, side: str) -> tuple[int, ...]:
        return LEFT_EYE_IDX if side == "left" else RIGHT_EYE_IDX

    def group_box(self, group: tuple[int, ...], pad: float = 0.0) -> Box:
        p = self.points(group)
        x0, y0 = p.min(0)
        x1, y1 = p.max(0)
        dx, dy = (x1 - x0) * pad, (y1 - y0) * pad
        return (int(x0 - dx), int(y0 - dy), int(np.ceil(x1 + dx)), int(np.ceil(y1 + dy)))


@dataclass(frozen=True)
class Hand:
    """One hand: 21 landmarks (x, y, z in pixels), 'Left'/'Right' as the model sees it, score."""

    landmarks: np.ndarray
    handedness: str
    score: float

    @property
    def box(self) -> Box:
        p = self.landmarks[:, :2]
        return (int(p[:, 0].min()), int(p[:, 1].min()), int(np.ceil(p[:, 0].max())), int(np.ceil(p[:, 1].max())))

    @property
    def palm_center(self) -> np.ndarray:
        return self.landmarks[[0, 5, 9, 13, 17], :2].mean(0)

    @property
    def palm_size(self) -> float:
        """Wrist to middle knuckle distance: the hand's scale."""
        return float(np.linalg.norm(self.landmarks[9, :2] - self.landmarks[0, :2]))


CUT_FACE_WEIGHT = 0.7
"""A face whose box touches the frame's edge counts this share of its width when the main face is
chosen among several: a portrait frames its subject whole."""
WORK_SIDE = 1280
"""Longest side of the working copy that faces, hands and the person are found on. The detectors
resize to 128-256 px inside anyway; only the face mesh and the texture measures want native
pixels, and those run on crops around the face at native resolution."""


@dataclass(frozen=True)
class Analysis:
    """Everything the checks need from one image, computed once.

    Coordinates (boxes, landmarks, regions) are in the native image's pixels. `work` is the
    bounded working copy (`work_scale` = work / native) that image-wide measurements use, so a
    21 MP photo costs about what a 1.6 MP one does.
    """

    rgb: np.ndarray
    faces: list[Face]
    hands: list[Hand]
    person_work: np.ndarray
    """Selfie segmentation (0..1 float32) at the working copy's size."""
    seconds: float
    source: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    work: np.ndarray | None = None
    work_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.work is None:
            object.__setattr__(self, "work", self.rgb)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.rgb.shape[0]), int(self.rgb.shape[1]))

    @property
    def work_rgb(self) -> np.ndarray:
        assert self.work is not None
        return self.work

    @cached_property
    def person_mask(self) -> np.ndarray:
        """Person probability (0..1 float32) at native size (upsampled from the working copy)."""
        import cv2

        if self.person_work.shape[:2] == self.shape:
            return self.person_work
        return cv2.resize(self.person_work, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_LINEAR)

    @cached_property
    def skin_colour(self) -> np.ndarray:
        """(h, w) bool: pixels whose colour matches the faces' skin, anywhere in the image."""
        return _skin_colour_mask(self.rgb, self.faces)

    @cached_property
    def skin_mask(self) -> np.ndarray:
        """Skin-coloured pixels on or next to the person."""
        h, w = self.shape
        return self.skin_colour & _dilate(self.person_mask > 0.5, max(3, int(0.01 * max(h, w))))

    @property
    def luma(self) -> np.ndarray:
        return _luma(self.rgb)

    @property
    def face(self) -> Face | None:
        """The main face: the largest one with a mesh (else the largest detected), a face cut by
        the frame counting `CUT_FACE_WEIGHT` of its width (a neighbour half out of a group shot
        is not the subject)."""
        meshed = [f for f in self.faces if f.landmarks is not None]
        pool = meshed or self.faces
        h, w = self.shape

        def weight(f: Face) -> float:
            x0, y0, x1, y1 = f.box
            cut = x0 <= 1 or y0 <= 1 or x1 >= w - 1 or y1 >= h - 1
            return f.width * (CUT_FACE_WEIGHT if cut and len(pool) > 1 else 1.0)

        return max(pool, key=weight) if pool else None

    @property
    def face_box(self) -> Box | None:
        f = self.face
        return f.box if f else None

    @property
    def hand_boxes(self) -> list[Box]:
        return [h.box for h in self.hands]

    def region_mask(self, group: tuple[int, ...], face: Face | None = None) -> np.ndarray:
        """Polygon mask of a landmark group on the main face (or `face`); empty if no mesh."""
        f = face or self.face
        if f is None or f.landmarks is None:
            return np.zeros(self.shape, bool)
        return f.mask(group, self.shape)

    def face_skin_mask(self, face: Face | None = None) -> np.ndarray:
        """Face oval minus eyes, brows and mouth: the skin of one face."""
        f = face or self.face
        if f is None or f.landmarks is None:
            return np.zeros(self.shape, bool)
        return face_skin(f, self.shape)


def face_skin(f: Face, shape: tuple[int, int], offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """Face oval minus eyes, brows and mouth, drawn on a canvas of `shape` whose origin is
    `offset` (image pixels) and whose pixels are `scale` image pixels wide (1/scale)."""
    import cv2

    def poly(group: tuple[int, ...]) -> np.ndarray:
        m = np.zeros(shape, np.uint8)
        pts = (f.points(group) - np.array(offset, np.float32)) * scale
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], (1,))
        return m.astype(bool)

    m = poly(FACE_OVAL_IDX)
    r = max(2, int(f.width * scale * 0.03))
    for g in (LEFT_EYE_IDX, RIGHT_EYE_IDX, LIPS_OUTER_IDX, LEFT_EYEBROW_IDX, RIGHT_EYEBROW_IDX):
        m &= ~_dilate(poly(g), r)
    return m


# --- models, loaded once per process ------------------------------------------------------
_lock = threading.Lock()
_models_lock = threading.Lock()
_models_cache: dict[str, Any] = {}
_runs: dict[str, threading.Lock] = {name: threading.Lock() for name in ("detect", "mesh", "hands", "segment")}
"""One lock per model: a mediapipe graph runs one image at a time."""
_warm_thread: threading.Thread | None = None


def _models() -> dict[str, Any]:
    """The mediapipe models, built once per process (a warm-up thread may be building them:
    then this waits for it instead of loading a second copy)."""
    with _models_lock:
        if not _models_cache:
            _models_cache.update(in_own_thread(_load_models))
        return _models_cache


def in_own_thread(build: Callable[[], T]) -> T:
    """Run `build` in a fresh thread and return its result (or raise its error).

    Model libraries import lazily, and some keep the traceback of an error they caught while
    importing, which keeps every frame on the stack alive. Loaded from inside `analyze`, that would
    pin the first photo's pixels (63 MB at 21 MP) for the life of the process; a thread's stack
    holds nothing of the caller's."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append((True, build()))
        except BaseException as e:  # re-raised in the caller's thread
            out.append((False, e))

    t = threading.Thread(target=run, name="portrait-checks-load", daemon=True)
    t.start()
    t.join()
    ok, value = out[0]
    if not ok:
        raise value
    return cast(T, value)


def _load_models() -> dict[str, Any]:
    import logging
    import os

    from .quiet import native_quiet

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("absl").setLevel(logging.ERROR)
    with native_quiet(), _pyplot_deferred(), _without_audio():
        from mediapipe.python.solutions import face_detection, face_mesh, hands, selfie_segmentation

        models = {
            "detect": face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5),
            "mesh": face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True),
            "hands": hands.Hands(static_image_mode=True, max_num_hands=6, min_detection_confidence=0.4),
            "segment": selfie_segmentation.SelfieSegmentation(model_selection=0),
        }
        # the first run of each graph sets up its delegates (and logs about it): do it here, once
        tiny = np.zeros((64, 64, 3), np.uint8)
        for m in models.values():
            m.process(tiny)
    return models


@contextlib.contextmanager
def _pyplot_deferred() -> Iterator[None]:
    """Import mediapipe's solutions without importing matplotlib: its drawing helpers import pyplot
    at module level (about 45 MB and 0.3 s) and the checklist never draws. While the block runs,
    `matplotlib.pyplot` is a stand-in that imports the real module on first use; afterwards
    `import matplotlib` anywhere gets the real package as usual."""
    import sys
    import types

    if "matplotlib" in sys.modules:
        yield
        return

    class _Deferred(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            import importlib

            real = importlib.import_module(self.__name__)
            return getattr(real, name)

    stand_in = _Deferred("matplotlib.pyplot")
    sys.modules["matplotlib.pyplot"] = stand_in
    package = _Deferred("matplotlib")
    package.pyplot = stand_in  # type: ignore[attr-defined]
    sys.modules["matplotlib"] = package
    try:
        yield
    finally:
        for name in ("matplotlib", "matplotlib.pyplot"):
            if sys.modules.get(name) in (stand_in, package):
                del sys.modules[name]


@contextlib.contextmanager
def _without_audio() -> Iterator[None]:
    """Import mediapipe without `sounddevice`: its audio tasks import it at module level (PortAudio's
    library through cffi, 0.03 s of every checking process's start) and record without it when it
    is missing, which the checklist never does. Afterwards `import sounddevice` works as usual."""
    import sys

    if "sounddevice" in sys.modules:
        yield
        return
    sys.modules["sounddevice"] = None  # type: ignore[assignment]  # `import sounddevice` -> ImportError
    try:
        yield
    finally:
        if sys.modules.get("sounddevice", 0) is None:
            del sys.modules["sounddevice"]


def warm_up(ocr: bool = True, ocr_engines: int | None = None) -> threading.Thread:
    """Start loading the checklist's models in a daemon thread and return at once.

    Safe to call any number of times (one thread per process). The first `analyze` or text
    check waits for the loads in flight instead of starting its own. `ocr_engines`: OCR engines
    to ready (default one per core, for images checked at once; 1 for one check at a time)."""
    global _warm_thread
    with _lock:
        if _warm_thread is None:
            def load() -> None:
                try:
                    _models()
                    if ocr:
                        from .checks.background import ready_ocr

                        ready_ocr() if ocr_engines is None else ready_ocr(ocr_engines)
                    _ready_checks()
                except Exception:  # the real call reports the error in its own words
                    pass

            _warm_thread = threading.Thread(target=load, name="portrait-checks-warm-up", daemon=True)
            _warm_thread.start()
        return _warm_thread


def _ready_checks() -> None:
    """What the first check of a process would otherwise pay on top of the models (0.1-0.2 s): the
    check modules' imports and OpenCV's Lab tables, which it builds on the first Lab conversion."""
    import cv2

    from .checks import _checks

    _checks()
    cv2.cvtColor(np.zeros((1, 1, 3), np.float32), cv2.COLOR_RGB2LAB)


@cache
def _dlib_models() -> tuple[Any, Any]:
    import importlib.util

    import dlib

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise CheckError("face_recognition_models is not installed", hint="pip install face-recognition-models")
    path = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


def load_image(image: Image.Image | np.ndarray | str | Path) -> tuple[np.ndarray, Path | None, dict[str, Any]]:
    """RGB uint8 array, the source path (if any) and PIL's info dict (PNG text, XMP).

    Paths go through `imaging.open_image`: folders, non-images and decompression bombs get a
    clear `ImageInputError` naming the file."""
    source = None
    if isinstance(image, str | Path):
        from .imaging import image_size, open_image

        source = Path(image)
        w, h = image_size(source)  # folders, non-images and bombs fail here, before any decoding
        fast = _decode_large(source) if w * h >= LARGE_PIXELS else None
        if fast is not None:
            return fast[0], source, fast[1]
        image = open_image(source, mode=None)
    if isinstance(image, Image.Image):
        info = {str(k): v for k, v in image.info.items()}
        if image.mode != "RGB":
            from .imaging import _finish

            image = _finish(image, "RGB", orient=False)
        rgb = np.asarray(image)
    else:
        info = {}
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        if arr.ndim != 3 or arr.shape[2] < 3:
            raise CheckError(f"expected an RGB image array, got shape {arr.shape}", hint="pass an H×W×3 uint8 array")
        rgb = arr[..., :3].astype(np.uint8, copy=False)
    return np.ascontiguousarray(rgb), source, info


LARGE_PIXELS = 4_000_000
"""From this size on, plain RGB JPEG/PNG files are decoded straight into one array (OpenCV, EXIF
orientation applied) instead of through Pillow plus a copy: a 21 MP photo then costs 63 MB, not 126."""


def _decode_large(path: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    import cv2

    from .quiet import native_quiet

    with Image.open(path) as im:
        if im.format not in ("JPEG", "PNG") or im.mode != "RGB":
            return None
        info = {str(k): v for k, v in im.info.items()}
    with native_quiet():
        arr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if arr is None:
        return None
    cv2.cvtColor(arr, cv2.COLOR_BGR2RGB, dst=arr)
    return arr, info


def working_copy(rgb: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """The image downscaled (area-averaged) so its longest side is at most `side`, and the scale."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, side / max(h, w))
    if s >= 1.0:
        return rgb, 1.0
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def analyze(image: Image.Image | np.ndarray | str | Path, *, dlib68: bool = False) -> Analysis:
    """Run the face, hand and segmentation models once on `image`.

    Faces, hands and the person are found on a working copy of at most `WORK_SIDE` pixels;
    each face's mesh is then fitted on a crop of the native pixels."""
    from .quiet import native_quiet

    t0 = time.perf_counter()
    rgb, source, info = load_image(image)
    h, w = rgb.shape[:2]
    if min(h, w) < 16:
        raise CheckError(f"image is too small to analyse ({w}x{h})", hint="give a picture at least 16 pixels a side")
    work, s = working_copy(rgb)
    models = _models()
    with native_quiet():
        faces = _find_faces(rgb, work, s, models)
        hands = _find_hands(work, s, models)
        person = _person_mask(work, models)
    if dlib68:
        faces = [_with_dlib(rgb, f) for f in faces]
    return Analysis(
        rgb=rgb,
        faces=faces,
        hands=hands,
        person_work=person,
        seconds=time.perf_counter() - t0,
        source=source,
        info=info,
        work=work,
        work_scale=s,
    )


def _find_faces(rgb: np.ndarray, work: np.ndarray, s: float, models: dict[str, Any]) -> list[Face]:
    h, w = rgb.shape[:2]
    res = _process(models, "detect", work)
    boxes: list[tuple[Box, float]] = []
    for d in res.detections or []:
        bb = d.location_data.relative_bounding_box
        x0, y0 = int(bb.xmin * w), int(bb.ymin * h)
        x1, y1 = int((bb.xmin + bb.width) * w), int((bb.ymin + bb.height) * h)
        boxes.append(((max(0, x0), max(0, y0), min(w, x1), min(h, y1)), float(d.score[0])))
    faces = [_mesh_face(rgb, box, score, models) for box, score in boxes]
    if not faces:  # very close crops can defeat the full-range detector; try the mesh directly
        whole = _mesh_face(rgb, (0, 0, w, h), 0.0, models, margin=0.0)
        if whole.landmarks is not None:
            p = whole.landmarks[:, :2]
            box = (int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max()))
            faces = [Face(box=box, score=0.5, landmarks=whole.landmarks)]
    return faces


def _mesh_face(rgb: np.ndarray, box: Box, score: float, models: dict[str, Any], margin: float = 0.6) -> Face:
    """Run the face mesh on a square crop around `box` (the mesh's own detector is short-range)."""
    import cv2

    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cx0, cy0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    cx1, cy1 = min(w, int(cx + side / 2)), min(h, int(cy + side / 2))
    crop = rgb[cy0:cy1, cx0:cx1]
    scale = 1.0
    if max(crop.shape[:2]) < 192 or max(crop.shape[:2]) > 640:
        scale = 384 / max(crop.shape[:2])
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    res = _process(models, "mesh", np.ascontiguousarray(crop))
    if not res.multi_face_landmarks:
        return Face(box=box, score=score)
    ch, cw = crop.shape[:2]
    pts = np.array([(p.x * cw, p.y * ch, p.z * cw) for p in res.multi_face_landmarks[0].landmark], np.float32)
    pts /= scale
    pts[:, 0] += cx0
    pts[:, 1] += cy0
    return Face(box=box, score=score, landmarks=pts)


def _find_hands(work: np.ndarray, s: float, models: dict[str, Any]) -> list[Hand]:
    h, w = work.shape[0] / s, work.shape[1] / s
    res = _process(models, "hands", work)
    hands = []
    for lms, hd in zip(res.multi_hand_landmarks or [], res.multi_handedness or []):
        pts = np.array([(p.x * w, p.y * h, p.z * w) for p in lms.landmark], np.float32)
        c = hd.classification[0]
        hands.append(Hand(landmarks=pts, handedness=str(c.label), score=float(c.score)))
    return hands


def _person_mask(rgb: np.ndarray, models: dict[str, Any]) -> np.ndarray:
    with _runs["segment"]:  # the mask is a view of the graph's output: copy it before the next run
        return np.array(models["segment"].process(rgb).segmentation_mask, np.float32)


def _process(models: dict[str, Any], name: str, image: np.ndarray) -> Any:
    """Run one model on `image`, one caller at a time per model (its outputs are plain copies)."""
    with _runs[name]:
        return models[name].process(image)


def _with_dlib(rgb: np.ndarray, face: Face) -> Face:
    import dlib

    _, predictor = _dlib_models()
    x0, y0, x1, y1 = face.box
    shape = predictor(rgb, dlib.rectangle(x0, y0, x1, y1))
    pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], np.float32)
    return Face(box=face.box, score=face.score, landmarks=face.landmarks, dlib68=pts)


def _skin_colour_mask(rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
    """Pixels within a Mahalanobis distance of the faces' cheek/forehead colour (YCrCb chroma)."""
    import cv2

    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    samples = []
    for f in faces:
        if f.landmarks is None:
            continue
        shape = (int(rgb.shape[0]), int(rgb.shape[1]))
        m = np.zeros(shape, bool)
        for g in (CHEEK_L_IDX, CHEEK_R_IDX, FOREHEAD_IDX):
            m |= f.mask(g, shape)
        samples.append(ycc[m])
    chroma = ycc[..., 1:]
    if samples and sum(len(s) for s in samples) >= 30:
        s = np.concatenate(samples)
        mean = s[:, 1:].mean(0)
        cov = np.cov(s[:, 1:].T) + np.eye(2) * 4.0
        inv = np.linalg.inv(cov)
        d = chroma - mean
        dist = np.einsum("...i,ij,...j->...", d, inv, d)
        lo = max(20.0, float(np.percentile(s[:, 0], 1)) * 0.4)
        return (dist < 3.0**2) & (ycc[..., 0] > lo)
    cr, cb = chroma[..., 0], chroma[..., 1]
    return (cr > 135) & (cr < 175) & (cb > 80) & (cb < 130) & (ycc[..., 0] > 40)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)
