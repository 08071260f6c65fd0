"""Identity: real photos of one person stay under the threshold, other people land above it."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data

from portrait_studio.errors import CheckError
from portrait_studio.identity import (
    DEFAULT_THRESHOLDS,
    FaceEmbedding,
    anchor_embedding,
    face_embedding,
    face_embeddings,
    identity_distance,
    measure_drift,
)
from portrait_studio.testing import photos

OBAMAS = ("obama", "obama2", "obama3", "obama_partial_face")


@pytest.fixture(scope="module")
def faces() -> dict[str, FaceEmbedding]:
    paths = photos.face_recognition_photos()
    found: dict[str, FaceEmbedding] = {}
    for stem in (*OBAMAS, "biden"):
        face = face_embedding(paths[stem])
        assert face is not None, stem
        found[stem] = face
    astronaut = face_embedding(photos.astronaut())
    assert astronaut is not None
    found["astronaut"] = astronaut
    return found


def test_photos_of_the_same_person_fall_under_the_same_person_threshold(faces):
    for a, b in itertools.combinations(OBAMAS, 2):
        distance = identity_distance(faces[a], faces[b])
        assert distance < DEFAULT_THRESHOLDS.same_person_max, (a, b, distance)
        assert DEFAULT_THRESHOLDS.verdict(distance) in ("pass", "warn")


def test_different_people_land_above_the_threshold(faces):
    for obama in OBAMAS:
        for other in ("biden", "astronaut"):
            distance = identity_distance(faces[obama], faces[other])
            assert distance > DEFAULT_THRESHOLDS.same_person_max, (obama, other, distance)
            assert DEFAULT_THRESHOLDS.verdict(distance) == "fail"


def test_everyone_in_the_group_photo_is_someone_else():
    with Image.open(photos.group_with_hands()) as opened:
        group = opened.convert("RGB")
    people = face_embeddings(group)
    assert len(people) == 6
    for a, b in itertools.combinations(people, 2):
        assert identity_distance(a, b) > DEFAULT_THRESHOLDS.same_person_max


def test_the_largest_face_is_the_one_measured():
    with Image.open(photos.group_with_hands()) as opened:
        group = opened.convert("RGB")
    largest = face_embedding(group)
    assert largest is not None
    assert largest.area == max(face.area for face in face_embeddings(group))


@pytest.mark.parametrize("edit", ["mirror", "shrink_to_0.8", "enlarge_to_1.3", "jpeg_q40"])
def test_a_flipped_rescaled_or_compressed_copy_is_still_the_same_person(faces, edit):
    image = photos.astronaut()
    if edit == "mirror":
        image = ImageOps.mirror(image)
    elif edit.startswith("shrink") or edit.startswith("enlarge"):
        factor = float(edit.rsplit("_", 1)[1])
        image = image.resize((round(512 * factor), round(512 * factor)), Image.Resampling.LANCZOS)
    else:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=40)
        image = Image.open(io.BytesIO(buffer.getvalue()))
    copy = face_embedding(image)
    assert copy is not None
    distance = identity_distance(faces["astronaut"], copy)
    assert DEFAULT_THRESHOLDS.verdict(distance) == "pass", distance


def test_an_rgba_png_gives_the_same_embedding_as_its_jpeg(faces):
    rgba = photos.face_recognition_photos()["32bit"]
    assert Image.open(rgba).mode == "RGBA"
    copy = face_embedding(rgba)
    obama2 = face_embedding(photos.face_recognition_photos()["obama2"])
    assert copy is not None and obama2 is not None
    assert identity_distance(copy, obama2) < 0.05


def test_a_photo_without_a_face_reports_no_face():
    assert face_embedding(data.coffee()) is None
    assert face_embedding(data.chelsea()) is None  # a cat


def test_the_astronauts_mission_patch_is_not_taken_for_a_face():
    patch = photos.astronaut().crop((60, 280, 300, 510))
    assert face_embedding(patch) is None


def test_an_anchor_without_a_face_is_refused_with_a_fix():
    with pytest.raises(CheckError) as info:
        anchor_embedding(data.coffee())
    assert "no face" in info.value.message
    assert info.value.hint and "headshot" in info.value.hint


def test_drift_report_marks_another_person_as_fail_and_a_faceless_shot_as_no_face(faces):
    paths = photos.face_recognition_photos()
    report = measure_drift(faces["obama"], [paths["obama2"], paths["biden"], data.coffee()], start_index=1)
    assert [s.shot_index for s in report.shots] == [1, 2, 3]
    assert [s.status for s in report.shots] == ["pass", "fail", "no_face"]
    assert [s.passed for s in report.shots] == [True, False, False]
    distances = report.distances
    assert distances[0] is not None and distances[0] < DEFAULT_THRESHOLDS.drift_warn
    assert distances[1] is not None and distances[1] > DEFAULT_THRESHOLDS.same_person_max
    assert distances[2] is None
    assert not report.all_passed
    assert report.first_failure is not None and report.first_failure.shot_index == 2
    # the report crosses boundaries (ledger, web): it round-trips through JSON
    assert report.model_validate_json(report.model_dump_json()) == report
    assert '"passed":false' in report.shots[2].model_dump_json().replace(" ", "")


def test_thresholds_grade_distances_pass_warn_fail():
    t = DEFAULT_THRESHOLDS
    assert t.drift_warn < t.same_person_max
    assert t.verdict(t.drift_warn - 0.01) == "pass"
    assert t.verdict((t.drift_warn + t.same_person_max) / 2) == "warn"
    assert t.verdict(t.same_person_max + 0.01) == "fail"


def test_embeddings_accept_arrays_images_and_paths_alike():
    path = photos.face_recognition_photos()["obama"]
    from_path = face_embedding(path)
    with Image.open(path) as opened:
        pil = ImageOps.exif_transpose(opened).convert("RGB")
    from_pil = face_embedding(pil)
    from_array = face_embedding(np.asarray(pil))
    assert from_path == from_pil == from_array
