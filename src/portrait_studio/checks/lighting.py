"""Lighting: no clipped shadows or highlights on the face, and the key where the brief put it."""

from __future__ import annotations

import numpy as np

from ..analysis import CHEEK_L_IDX, CHEEK_R_IDX, FACE_OVAL_IDX, NOSE_TIP, Analysis, Face, face_skin
from ._pixels import box_of, channel_max, channel_min, clip_box, luma, points_box
from .base import CheckContext, CheckResult, Status

__all__ = ["check_lighting"]

FACE_CLIP_MAX = {"shadows": 0.01, "highlights": 0.08}
"""Share of the face's skin whose luma is at 0-3 (shadows) or 252-255 (highlights) before it fails:
hard light leaves clipped specular spots on a clean face (up to ~6% on the training photos); skin
is almost never pure black."""
CHANNEL_CLIP_MAX = {"shadows": 0.045, "highlights": 0.16}
"""Share of the face's skin with any colour channel clipped (the darkest channel at 0-2, or the
brightest at 254-255) before it fails. Skin clips one channel first (red in highlights, blue in
shadows), long before its luma does: clean training faces measure up to 0.03 (shadows) and 0.09
(highlights, hard light), faces exposed up half a stop or with crushed blacks 0.03-0.8."""
IMAGE_CLIP_WARN = 0.25
"""Share of the whole frame clipped before a warning (low-key backdrops legitimately go black)."""
SUBJECT_CLIP_MAX = 0.15
"""Share of the person (segmentation, face included) at luma 252-255 before highlights fail whatever
the face measures: a push of exposure blows the clothes, hair and hands of a subject whose dark skin
stays below 255. Clean training photos measure up to 0.02, other defects up to 0.09 (a side light
that blows a bare arm), faces exposed up a stop mostly 0.1-0.4."""
HEAD_SHARE = 0.45
"""The head, when no face was found: the top share of the person's height (head-and-shoulders)."""
SYMMETRIC_MAX = 1.35
"""Lit/shadow side ratio (linear light) up to which the face counts as evenly lit."""
DIRECTIONAL_MIN = 1.35
REMBRANDT_TRIANGLE_MIN = 1.25
"""Shadow-side cheek under the eye vs the outer shadow side, in linear light."""

PATTERNS_SYMMETRIC = {"clamshell", "butterfly", "paramount", "flat", "beauty"}
PATTERNS_DIRECTIONAL = {"rembrandt", "loop", "split", "window", "short", "broad", "side"}


def check_lighting(image: np.ndarray, analysis: Analysis, context: CheckContext) -> list[CheckResult]:
    h, w = analysis.shape
    k = max(1, int(np.ceil((h * w / 0.25e6) ** 0.5)))  # every k-th pixel: clipped shares survive decimation
    frame = luma(image[::k, ::k])
    view = _FaceSkin.of(image, analysis)
    subject = _subject(analysis, frame.shape)
    return [_clip(frame, view, "shadows"), _clip(frame, view, "highlights", subject, k, (h, w)),
            _pattern(view, analysis, context)]


def _subject(analysis: Analysis, shape: tuple[int, ...]) -> np.ndarray | None:
    """The person (segmentation) on the decimated frame; None when it covers under 2% of it."""
    import cv2

    person = cv2.resize(analysis.person_work, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR) > 0.5
    return person if person.mean() >= 0.02 else None


def _head(person: np.ndarray) -> np.ndarray:
    """The top `HEAD_SHARE` of the person's height: where a face the detector lost must be."""
    rows = np.flatnonzero(person.any(1))
    head = person.copy()
    head[int(rows[0] + HEAD_SHARE * (rows[-1] - rows[0] + 1)):] = False
    return head


class _FaceSkin:
    """The main face's skin on a crop (every `step`-th native pixel, face at most ~400 px wide)."""

    def __init__(self, y: np.ndarray, skin: np.ndarray, box: list[int], step: int, face: Face | None,
                 rgb: np.ndarray | None = None) -> None:
        self.y, self.skin, self.box, self.step, self.face = y, skin, box, step, face
        self.rgb = rgb

    @classmethod
    def of(cls, image: np.ndarray, analysis: Analysis) -> _FaceSkin:
        face = analysis.face
        if face is None:
            return cls(np.zeros((1, 1), np.float32), np.zeros((1, 1), bool), [0, 0, 1, 1], 1, None)
        if face.landmarks is None:  # found but not meshed (a blown-out face defeats the mesh first)
            import cv2

            box = list(face.box)
            step = max(1, int(face.width // 400))
            rgb = image[box[1]:box[3]:step, box[0]:box[2]:step]
            y = luma(rgb)
            skin = np.zeros(y.shape, np.uint8)
            hh, ww = y.shape
            cv2.ellipse(skin, (ww // 2, hh // 2), (max(1, int(ww * 0.35)), max(1, int(hh * 0.4))), 0, 0, 360, (1,), -1)
            ok = skin.astype(bool) if skin.sum() >= 50 else np.zeros(y.shape, bool)
            return cls(y, ok, box, step, None, rgb)
        box = points_box(face.points(FACE_OVAL_IDX), analysis.shape[1], analysis.shape[0], pad=0.02)
        step = max(1, int(face.width // 400))
        rgb = image[box[1]:box[3]:step, box[0]:box[2]:step]
        y = luma(rgb)
        skin = face_skin(face, (int(y.shape[0]), int(y.shape[1])), offset=(box[0], box[1]), scale=1.0 / step)
        if skin.sum() < 50:
            skin = np.zeros(y.shape, bool)
        return cls(y, skin, box, step, face, rgb)

    def poly(self, group: tuple[int, ...]) -> np.ndarray:
        import cv2

        assert self.face is not None
        m = np.zeros(self.y.shape, np.uint8)
        pts = (self.face.points(group) - np.array(self.box[:2], np.float32)) / self.step
        cv2.fillPoly(m, [np.round(pts).astype(np.int32)], (1,))
        return m.astype(bool)

    def to_image(self, b: list[int] | None) -> list[int] | None:
        if b is None:
            return None
        s, (x0, y0) = self.step, self.box[:2]
        return [x0 + b[0] * s, y0 + b[1] * s, x0 + b[2] * s, y0 + b[3] * s]


def _clip(frame: np.ndarray, view: _FaceSkin, which: str, subject: np.ndarray | None = None,
          k: int = 1, shape: tuple[int, int] = (0, 0)) -> CheckResult:
    """Clipping on the face's skin; for highlights also on the whole subject and, when no face was
    found, on the subject's head (`subject` is the person on the frame decimated by `k`)."""
    clipped_frame = (frame <= 3) if which == "shadows" else (frame >= 252)
    overall = float(clipped_frame.mean())
    item = f"lighting.{which}"
    word = "black" if which == "shadows" else "white"
    skin = view.skin
    if skin.any():
        clipped = (view.y <= 3) if which == "shadows" else (view.y >= 252)
        share = float(clipped[skin].mean())
        assert view.rgb is not None
        channel = (channel_min(view.rgb) <= 2) if which == "shadows" else (channel_max(view.rgb) >= 254)
        channel_share = float(channel[skin].mean())
        region = view.to_image(box_of(channel & skin) or box_of(skin))
        if share > FACE_CLIP_MAX[which]:
            return CheckResult(item=item, status="fail", measured=round(share, 4), threshold=FACE_CLIP_MAX[which], region=region,
                               explanation=f"{share * 100:.1f}% of the face's skin is clipped to pure {word}: detail there is lost.")
        if channel_share > CHANNEL_CLIP_MAX[which]:
            return CheckResult(item=item, status="fail", measured=round(share, 4), threshold=FACE_CLIP_MAX[which], region=region,
                               explanation=f"{channel_share * 100:.1f}% of the face's skin has a colour channel clipped to "
                               f"{'0' if which == 'shadows' else '255'} ({share * 100:.1f}% fully {word}): "
                               "tone and detail there are lost.")
    else:
        share, region = overall, None
    where = "the face"
    if subject is not None:  # highlights only: pure white is rare on a person; pure black is hair and suits
        person = float(clipped_frame[subject].mean())
        if person > SUBJECT_CLIP_MAX:
            return CheckResult(item=item, status="fail", measured=round(person, 4), threshold=SUBJECT_CLIP_MAX,
                               region=_native(box_of(clipped_frame & subject), k, shape),
                               explanation=f"{person * 100:.0f}% of the subject (skin, hair, clothes) is clipped to pure "
                               f"{word}: the photo is overexposed and detail there is lost.")
        if not skin.any() and view.face is None:  # a blown-out face defeats the face detector first
            head = _head(subject)
            share = float(clipped_frame[head].mean())
            region, where = _native(box_of(clipped_frame & head) or box_of(head), k, shape), "the subject's head (no face found)"
            if share > FACE_CLIP_MAX[which]:
                return CheckResult(item=item, status="fail", measured=round(share, 4), threshold=FACE_CLIP_MAX[which],
                                   region=region,
                                   explanation=f"No face was found and {share * 100:.1f}% of the subject's head is clipped "
                                   f"to pure {word}: a blown-out face loses its detail (and defeats the face detector).")
    if overall > IMAGE_CLIP_WARN:
        return CheckResult(item=item, status="warn", measured=round(share, 4), threshold=FACE_CLIP_MAX[which], region=None,
                           explanation=f"{'The face is fine' if skin.any() else 'No face was judged'} but {overall * 100:.0f}% "
                           f"of the frame is pure {word}; check it is intended.")
    return CheckResult(item=item, status="pass", measured=round(share, 4), threshold=FACE_CLIP_MAX[which], region=region,
                       explanation=f"{share * 100:.1f}% of {where} and {overall * 100:.1f}% of the frame are clipped to {word}.")


def _native(b: list[int] | None, k: int, shape: tuple[int, int]) -> list[int] | None:
    """A box on the frame decimated by `k`, in native pixels (`shape` is the native height, width)."""
    return None if b is None else clip_box([v * k for v in b], shape[1], shape[0])


def _linear(v: np.ndarray) -> float:
    return float(np.mean((np.clip(v, 0, 255) / 255.0) ** 2.2)) + 1e-4


def _pattern(view: _FaceSkin, analysis: Analysis, context: CheckContext) -> CheckResult:
    face = view.face
    item = "lighting.pattern"
    if face is None or face.landmarks is None:
        return CheckResult(item=item, status="not_applicable", explanation="No face with landmarks was found.")
    y, skin = view.y, view.skin
    nose_x = (float(face.landmarks[NOSE_TIP, 0]) - view.box[0]) / view.step
    xx = np.arange(y.shape[1])[None, :]
    cam_left = skin & (xx < nose_x)
    cam_right = skin & (xx >= nose_x)
    if cam_left.sum() < 30 or cam_right.sum() < 30:
        return CheckResult(item=item, status="not_applicable", region=view.to_image(box_of(skin)),
                           explanation="The face is turned too far to compare its two sides.")
    lit_l, lit_r = _linear(y[cam_left]), _linear(y[cam_right])
    ratio = max(lit_l, lit_r) / min(lit_l, lit_r)
    key = "left" if lit_l > lit_r else "right"
    region = view.box
    desc = f"the camera-{key} side is {ratio:.2f}x brighter (key from camera {key})"
    pattern = (context.lighting_pattern or "").lower() or None
    if pattern is None and context.key_side is None:
        return CheckResult(item=item, status="pass", measured=round(ratio, 3), threshold=None, region=region,
                           explanation=f"No lighting pattern was asked for; {desc}.")
    problems = []
    if pattern in PATTERNS_SYMMETRIC and ratio > SYMMETRIC_MAX:
        problems.append(f"{pattern} lighting should be near-even across the face, but {desc}")
    if (pattern in PATTERNS_DIRECTIONAL or context.key_side) and ratio >= DIRECTIONAL_MIN:
        if context.key_side and key != context.key_side:
            problems.append(f"the brief puts the key on camera {context.key_side}, but {desc}")
    elif pattern in PATTERNS_DIRECTIONAL and pattern != "window":
        problems.append(f"{pattern} lighting needs a lit and a shadow side, but the sides differ only {ratio:.2f}x")
    measured, threshold = ratio, (SYMMETRIC_MAX if pattern in PATTERNS_SYMMETRIC else DIRECTIONAL_MIN)
    if pattern == "rembrandt" and not problems:
        shadow_cheek = CHEEK_R_IDX if key == "right" else CHEEK_L_IDX  # subject's right is camera left
        tri = view.poly(shadow_cheek) & skin
        shadow_side = cam_right if key == "left" else cam_left
        outer = shadow_side & ~tri
        if tri.sum() >= 10 and outer.sum() >= 10:
            t = _linear(y[tri]) / _linear(y[outer])
            measured, threshold = t, REMBRANDT_TRIANGLE_MIN
            if t < REMBRANDT_TRIANGLE_MIN:
                problems.append(f"no lit triangle on the shadow-side cheek (it is only {t:.2f}x the rest of that side)")
    status: Status = "fail" if problems else "pass"
    return CheckResult(item=item, status=status, measured=round(measured, 3), threshold=threshold, region=region,
                       explanation=("Lighting does not match the brief: " + "; ".join(problems) + "." if problems
                                    else f"Lighting matches the brief ({pattern or 'key side'}): {desc}."))
