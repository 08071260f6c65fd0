"""The checklist in several threads at once (a run's images arriving together): the models no longer
queue behind one lock, and every result is the one a check on its own gives (#18)."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import portrait_studio.analysis as A
from _checks_helpers import corpus_analysis, corpus_photo
from portrait_studio.checks import CheckContext, run_checklist
from portrait_studio.checks import background as B
from portrait_studio.engine import EarlyChecks
from portrait_studio.testing.defects import DEFECTS


def _images() -> list[np.ndarray]:
    """Three different portraits, one with a watermark (the OCR reads text in it, not only looks)."""
    marked = DEFECTS["watermark"].build(corpus_photo("obama"), corpus_analysis("obama"), "obvious",
                                        np.random.default_rng(3))
    return [corpus_photo("gd_1"), marked, corpus_photo("fd_2")]


def _plain(items: Any) -> dict[str, Any]:
    out = items.model_dump(mode="json")
    out.pop("seconds")
    return out


def test_checks_in_three_threads_give_what_checks_one_at_a_time_give() -> None:
    images = _images()
    context = CheckContext(lighting_pattern="rembrandt", key_side="left")
    alone = [_plain(run_checklist(img, context)) for img in images]
    assert alone[1]["overall"] == "fail"  # the watermark was read, in every thread below too
    for _ in range(2):
        with ThreadPoolExecutor(3) as pool:
            together = list(pool.map(lambda img: _plain(run_checklist(img, context)), images * 2))
        assert together == alone * 2


def test_two_checks_read_text_at_once_each_with_its_own_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """One OCR engine behind one lock made the third image's text wait for the other two."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: one OCR engine")
    both_in = threading.Barrier(2, timeout=20)
    engines: list[Any] = []
    read = B._proposals

    def proposals(engine: Any, bgr: np.ndarray) -> list[list[int]]:
        engines.append(engine)
        both_in.wait()  # both threads are reading now, or this breaks
        return read(engine, bgr)

    monkeypatch.setattr(B, "_proposals", proposals)
    image = corpus_analysis("gd_1").work_rgb
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(B.find_text, [image, image]))
    assert found[0] == found[1]
    assert len(engines) == 2 and engines[0] is not engines[1]


def test_two_analyses_overlap_instead_of_queueing_for_all_the_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each mediapipe graph has its own lock: one image's hands are found while another's face is."""
    both_in = threading.Barrier(2, timeout=20)
    find_hands = A._find_hands

    def hands(work: np.ndarray, s: float, models: dict[str, Any]) -> list[A.Hand]:
        both_in.wait()
        return find_hands(work, s, models)

    monkeypatch.setattr(A, "_find_hands", hands)
    image = corpus_photo("gd_1")
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(A.analyze, [image, image])
    assert [f.box for f in a.faces] == [f.box for f in b.faces]
    assert np.array_equal(a.person_work, b.person_work)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: fewer workers")
def test_three_images_that_arrive_together_are_checked_together() -> None:
    """Two workers on two cores left the third image to wait, then run alone on one core."""
    all_in = threading.Barrier(3, timeout=20)

    def checker(path: Path, brief: Any) -> tuple[str, float, dict[str, Any]]:
        all_in.wait()
        return "pass", 90.0, {"image": path.name}

    early = EarlyChecks(checker, brief=None)
    try:
        for n in range(3):
            early.submit(f"sha{n}", Path(f"{n}.png"))
        assert [early.take(f"sha{n}") for n in range(3)] == [("pass", 90.0, {"image": f"{n}.png"}) for n in range(3)]
    finally:
        early.close()


def test_a_check_that_finds_every_ocr_engine_busy_waits_for_one_instead_of_building_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    B.ready_ocr(1)
    monkeypatch.setattr(B, "OCR_COPIES", B._ocr_made)  # every engine there is: no room for another
    held, got = [], []
    with contextlib.ExitStack() as stack:
        while B._ocr_free:
            held.append(stack.enter_context(B._borrowed_ocr()))

        def borrow() -> None:
            with B._borrowed_ocr() as engine:
                got.append(engine)

        waiting = threading.Thread(target=borrow)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not got  # waits while all are lent
    waiting.join(20)
    assert len(got) == 1 and any(got[0] is e for e in held)
    assert B._ocr_made == len(held)


def _slow_engines(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> tuple[threading.Event, list[Any]]:
    """An empty OCR pool with room for two engines, whose engines take until `release` to build."""
    monkeypatch.setattr(B, "_ocr_free", [])
    monkeypatch.setattr(B, "_ocr_made", 0)
    monkeypatch.setattr(B, "_ocr_claims", 0)
    monkeypatch.setattr(B, "OCR_COPIES", 2)
    release, built = threading.Event(), []

    def build() -> Any:
        release.wait(20)
        if fail:
            raise RuntimeError("the OCR model is damaged")
        built.append(object())
        return built[-1]

    monkeypatch.setattr(B, "_new_ocr", build)
    return release, built


def _borrow_in_thread(got: list[Any]) -> threading.Thread:
    def borrow() -> None:
        try:
            with B._borrowed_ocr() as engine:
                got.append(engine)
        except RuntimeError as exc:
            got.append(exc)

    t = threading.Thread(target=borrow)
    t.start()
    return t


def _check_while_the_warm_up_builds(got: list[Any]) -> tuple[threading.Thread, threading.Thread]:
    """The warm-up building one engine (held until released), and a check that asked for one since."""

    def warm_up() -> None:
        with contextlib.suppress(RuntimeError):  # a failed build: the check reports it
            B.ready_ocr(1)

    warm = threading.Thread(target=warm_up)
    warm.start()
    while B._ocr_made < 1:
        threading.Event().wait(0.01)
    check = _borrow_in_thread(got)
    check.join(0.3)
    return warm, check


def test_a_check_waits_for_the_engine_the_warm_up_is_building_instead_of_building_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`portrait check` readies one engine while the first photo's faces are analysed; a check that
    reaches its text first takes that one when it is built: one engine, not two (0.15 s and 15 MB)."""
    release, built = _slow_engines(monkeypatch)
    got: list[Any] = []
    warm, check = _check_while_the_warm_up_builds(got)
    assert check.is_alive() and not got and B._ocr_made == 1  # waiting for it, not building another
    release.set()
    warm.join(20)
    check.join(20)
    assert len(built) == 1 and got == built
    # two checks at once while it is lent: the second builds the second engine instead of waiting
    with B._borrowed_ocr() as first:
        second: list[Any] = []
        _borrow_in_thread(second).join(20)
    assert first is built[0] and len(built) == 2 and second == [built[1]]


def test_a_check_waiting_for_an_engine_whose_build_fails_builds_its_own_and_reports_the_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    release, _ = _slow_engines(monkeypatch, fail=True)
    got: list[Any] = []
    warm, check = _check_while_the_warm_up_builds(got)
    assert check.is_alive()
    release.set()
    warm.join(20)
    check.join(20)
    assert not check.is_alive() and len(got) == 1 and "damaged" in str(got[0])  # an error, not a hang
    assert B._ocr_made == 0 and B._ocr_claims == 0


def test_the_ocr_reads_the_same_with_its_registry_cut_to_the_engine_it_uses(tmp_path: Path) -> None:
    """rapidocr loads every engine's model registry into OmegaConf trees while it is imported (0.4 s
    of each checking process's start); the checklist imports it with only the onnxruntime part for
    the sessions and the tables that route to a model, as plain dicts, for the router. The text it reads is the same as with the whole registry."""
    import json
    import subprocess
    import sys

    from PIL import Image, ImageDraw, ImageFont

    card = Image.new("RGB", (900, 300), (240, 236, 228))
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default(size=64)
    draw.text((40, 60), "STOCK PHOTO", fill=(20, 20, 20), font=font)
    draw.text((40, 170), "SAMPLE 2026", fill=(90, 30, 30), font=font)
    card.save(tmp_path / "marked.png")
    code = """
import json, sys
import numpy as np
from PIL import Image
if sys.argv[2] == "whole":
    import rapidocr.main  # rapidocr's own import: every engine's registry
from portrait_studio.checks import background as B
found = B.find_text(np.asarray(Image.open(sys.argv[1]).convert("RGB")))
from rapidocr.inference_engine.base import InferSession
from rapidocr.utils import model_resolver as R
print(json.dumps({"found": found, "registry": sorted(InferSession.model_info),
                  "routes": sorted(R._MODEL_CONFIG), "languages": len(R.LANG_MAPPING)}))
"""
    src = Path(__file__).resolve().parents[1] / "src"
    runs = {how: json.loads(subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "marked.png"), how], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(src)}).stdout.strip().splitlines()[-1]) for how in ("lean", "whole")}
    assert runs["lean"]["registry"] == sorted(B._REGISTRY_KEYS)
    assert len(runs["whole"]["registry"]) > len(B._REGISTRY_KEYS)
    assert runs["lean"]["routes"] == sorted(B._ROUTING_KEYS)  # the router's tables, whole
    assert runs["lean"]["languages"] == runs["whole"]["languages"] > 0
    assert runs["lean"]["found"] and runs["lean"]["found"] == runs["whole"]["found"]


def test_loading_the_face_models_imports_neither_pyplot_nor_the_audio_library() -> None:
    """mediapipe imports matplotlib's pyplot and sounddevice (PortAudio) at module level; the checklist
    draws nothing and records nothing, so a checking process loads neither (sounddevice looks for
    PortAudio with `ctypes.util.find_library`, which runs `ldconfig`), and both import as usual
    afterwards for whoever wants them."""
    import json
    import subprocess
    import sys

    code = """
import json, sys
looked_for = []
class Witness:  # sees every import the import system looks for (a blocked one never gets here)
    def find_spec(self, name, path=None, target=None):
        looked_for.append(name)
sys.meta_path.insert(0, Witness())
import portrait_studio.analysis as A
A._load_models()
imported = {name: name in looked_for for name in ("matplotlib.pyplot", "sounddevice")}
import matplotlib.pyplot
try:
    import sounddevice
    audio = "imported"
except OSError as e:  # no PortAudio on this machine: sounddevice's own error, not a blocked import
    audio = "OSError"
print(json.dumps({"imported": imported, "after": [matplotlib.pyplot.__name__, audio]}))
"""
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(src), "MPLBACKEND": "Agg"})
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["imported"] == {"matplotlib.pyplot": False, "sounddevice": False}
    assert seen["after"][0] == "matplotlib.pyplot" and seen["after"][1] in {"imported", "OSError"}


def test_portrait_check_loads_the_ocr_while_the_first_photo_is_analysed(tmp_path: Path) -> None:
    """`portrait check` starts the models loading in a thread before the first photo, so the OCR
    (0.3 s to import, 0.15 s to build) is ready when the background check reads text, instead of
    loading after the face analysis; photos checked one at a time use one OCR engine, so one is built."""
    import json
    import subprocess
    import sys

    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (96, 96), (120, 110, 100)).save(tmp_path / name)
    code = """
import atexit, json, sys
def report():
    import portrait_studio.analysis as A
    from portrait_studio.checks import background as B
    print(json.dumps({"warm": A._warm_thread is not None and A._warm_thread.name, "engines": B._ocr_made}))
atexit.register(report)
sys.argv = ["portrait", "check", sys.argv[1], sys.argv[2], "--json"]
from portrait_studio.cli import main
main()
"""
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.png"), str(tmp_path / "b.png")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": src.as_posix(), "PORTRAIT_STUDIO_HOME": str(tmp_path / "h")})
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"warm": "portrait-checks-warm-up", "engines": 1}, out.stderr
