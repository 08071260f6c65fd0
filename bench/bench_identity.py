"""Recompute the identity calibration: every pair distance on real photos, the separation, timing.

    python bench/bench_identity.py [--pairs]

Same person: the five Obama photos of the face_recognition sdist (32bit.png is a copy of
obama2 and is left out). Different people: those against biden.jpg, scikit-image's astronaut
and the six faces cropped from insightface's group photo t1.jpg, and all of those against each
other. The chosen thresholds live in portrait_studio.identity.DEFAULT_THRESHOLDS.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
from PIL import Image

from portrait_studio.identity import (
    DEFAULT_THRESHOLDS,
    FaceEmbedding,
    _models,
    face_embedding,
    face_embeddings,
    identity_distance,
)
from portrait_studio.testing import photos


def calibration_faces() -> dict[str, FaceEmbedding]:
    faces: dict[str, FaceEmbedding] = {}
    for stem, path in photos.face_recognition_photos().items():
        if stem == "32bit":
            continue
        face = face_embedding(path)
        assert face is not None, f"no face in {stem}"
        faces[stem] = face
    astronaut = face_embedding(photos.astronaut())
    assert astronaut is not None
    faces["astronaut"] = astronaut
    with Image.open(photos.group_with_hands()) as opened:
        group = opened.convert("RGB")
    for n, face in enumerate(sorted(face_embeddings(group), key=lambda f: f.box[0])):
        left, top, right, bottom = face.box
        margin = right - left
        crop = group.crop((left - margin, top - margin, right + margin, bottom + margin))
        cropped = face_embedding(crop)
        assert cropped is not None, f"no face in crop {n} of t1.jpg"
        faces[f"t1_face{n}"] = cropped
    return faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", action="store_true", help="print every pair distance")
    args = parser.parse_args()

    t0 = time.perf_counter()
    _models()
    load_s = time.perf_counter() - t0

    faces = calibration_faces()
    same: list[tuple[float, str, str]] = []
    different: list[tuple[float, str, str]] = []
    for a, b in itertools.combinations(sorted(faces), 2):
        d = identity_distance(faces[a], faces[b])
        (same if a.startswith("obama") and b.startswith("obama") else different).append((d, a, b))
    same.sort()
    different.sort()
    if args.pairs:
        for label, rows in (("same", same), ("different", different)):
            for d, a, b in rows:
                print(f"{label:9s} {d:.3f}  {a} ~ {b}")

    max_same, min_diff = same[-1], different[0]
    print(f"faces: {len(faces)}, same-person pairs: {len(same)}, different-person pairs: {len(different)}")
    print(f"same person:      {same[0][0]:.3f} .. {max_same[0]:.3f}  (max: {max_same[1]} ~ {max_same[2]})")
    print(
        f"different people: {min_diff[0]:.3f} .. {different[-1][0]:.3f}  (min: {min_diff[1]} ~ {min_diff[2]})"
    )
    print(f"separation (min different - max same): {min_diff[0] - max_same[0]:.3f}")
    print(f"gap midpoint: {(min_diff[0] + max_same[0]) / 2:.3f}")
    t = DEFAULT_THRESHOLDS
    wrong = [p for p in same if p[0] > t.same_person_max] + [
        p for p in different if p[0] <= t.same_person_max
    ]
    print(
        f"thresholds: same_person_max={t.same_person_max}, drift_warn={t.drift_warn}; misclassified pairs: {len(wrong)}"
    )

    astronaut = photos.astronaut()
    face_embedding(astronaut)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        face_embedding(astronaut)
        runs.append(time.perf_counter() - t0)
    obama = photos.face_recognition_photos()["obama3"]
    t0 = time.perf_counter()
    face_embedding(obama)
    big_s = time.perf_counter() - t0
    print(f"model load: {load_s:.2f} s")
    print(f"face_embedding, astronaut 512x512: median {np.median(runs) * 1000:.0f} ms")
    print(f"face_embedding, obama3 1434x2333 file: {big_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
