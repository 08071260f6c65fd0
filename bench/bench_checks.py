"""Calibrate the checklist: per-check precision/recall on real photos + synthetic defects, and speed.

    python bench/bench_checks.py            # PYTHONPATH=src; pin to one core with `taskset -c 0`

A positive is a (image, item) where the defect targets the item; every other applicable item
on every image (clean or defective) is a negative unless the test suite lists it as a known
side effect. 'Flagged' means fail. Speed is the full checklist (analysis + all checks + OCR)
on each clean photo resized to 1 megapixel, one thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time
from collections import defaultdict

import cv2
import numpy as np
from PIL import Image

from portrait_studio.analysis import analyze
from portrait_studio.checks import CheckContext, run_checklist
from portrait_studio.testing import photos
from portrait_studio.testing.defects import DEFECTS

SIDE_EFFECTS = {
    "blurred_eyes": {"eyes.catchlights"},
    "clipped_shadows": {"lighting.pattern", "mouth.teeth", "background.artifacts"},
}


def sources() -> dict[str, np.ndarray]:
    out = {"astronaut": np.asarray(photos.astronaut().convert("RGB")),
           "group": np.asarray(Image.open(photos.group_with_hands()).convert("RGB"))}
    for name in ("obama", "obama2", "obama3", "biden"):
        out[name] = np.asarray(Image.open(photos.face_recognition_photos()[name]).convert("RGB"))
    return out


def applicable(defect: str, an: object, clean_items: dict[str, str]) -> bool:
    needs = DEFECTS[defect].needs
    face = getattr(an, "face", None)
    if needs == "hand":
        return bool(getattr(an, "hands", []))
    if needs in ("face", "iris"):
        return face is not None and face.landmarks is not None
    if needs == "teeth":
        return clean_items.get("mouth.teeth") not in (None, "not_applicable")
    return True


def main() -> None:
    cv2.setNumThreads(1)
    tp: dict[str, int] = defaultdict(int)
    fp: dict[str, int] = defaultdict(int)
    fn: dict[str, int] = defaultdict(int)
    misses = []
    false_alarms = []
    for name, rgb in sources().items():
        an = analyze(rgb)
        clean = run_checklist(rgb, analysis=an)
        clean_items = {it.item: it.status for it in clean.items}
        for it in clean.items:
            if it.status == "fail":
                fp[it.item] += 1
                false_alarms.append(f"{name}/clean: {it.item} ({it.measured})")
        for defect, d in DEFECTS.items():
            if not applicable(defect, an, clean_items):
                continue
            try:
                img = d.build(rgb, an)
            except ValueError:
                continue
            c = run_checklist(img, CheckContext(**(d.context or {})))
            for it in c.items:
                if it.item == d.target:
                    if it.status == "fail":
                        tp[it.item] += 1
                    else:
                        fn[it.item] += 1
                        misses.append(f"{name}/{defect}: {it.item} {it.status} ({it.measured})")
                elif (it.status == "fail" and clean_items.get(it.item) != "fail"
                      and it.item not in SIDE_EFFECTS.get(defect, set())):
                    fp[it.item] += 1
                    false_alarms.append(f"{name}/{defect}: {it.item} ({it.measured})")
    items = sorted(set(tp) | set(fp) | set(fn))
    print(f"{'item':24s} {'TP':>3s} {'FP':>3s} {'FN':>3s} {'precision':>9s} {'recall':>7s}")
    for item in items:
        p = tp[item] / (tp[item] + fp[item]) if tp[item] + fp[item] else float("nan")
        r = tp[item] / (tp[item] + fn[item]) if tp[item] + fn[item] else float("nan")
        print(f"{item:24s} {tp[item]:3d} {fp[item]:3d} {fn[item]:3d} {p:9.2f} {r:7.2f}")
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    print(f"{'ALL':24s} {total_tp:3d} {total_fp:3d} {total_fn:3d} "
          f"{total_tp / max(1, total_tp + total_fp):9.2f} {total_tp / max(1, total_tp + total_fn):7.2f}")
    print("\nmisses:", *misses, sep="\n  ")
    print("\nfalse alarms:", *false_alarms, sep="\n  ")
    speed()


def speed() -> None:
    from portrait_studio.checks.background import find_text

    print("\nseconds per 1-megapixel image (one thread), after warm-up:")
    warm = cv2.resize(np.asarray(photos.astronaut()), (1000, 1000))
    run_checklist(warm)
    rows = []
    for name, rgb in sources().items():
        s = (1e6 / (rgb.shape[0] * rgb.shape[1])) ** 0.5
        img = cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        t0 = time.perf_counter()
        an = analyze(img)
        t1 = time.perf_counter()
        run_checklist(img, analysis=an)
        t2 = time.perf_counter()
        find_text(img)
        t3 = time.perf_counter()
        rows.append((t2 - t0, t1 - t0, t3 - t2))
        print(f"  {name:10s} {img.shape[1]}x{img.shape[0]}  total {t2 - t0:.3f} s  "
              f"(analysis {t1 - t0:.3f} s, checks {t2 - t1:.3f} s of which OCR ~{t3 - t2:.3f} s)")
    tot = np.array(rows)
    print(f"  mean total {tot[:, 0].mean():.3f} s; analysis {tot[:, 1].mean():.3f} s; OCR {tot[:, 2].mean():.3f} s")


if __name__ == "__main__":
    main()
