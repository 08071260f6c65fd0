"""The BFL sandbox speaks BFL's documented contract, checked with plain HTTP."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image

from portrait_studio.testing.openapi import bfl_openapi, request_schema, validate
from portrait_studio.testing.sandbox import FAULTS, start_sandbox
from portrait_studio.testing.sandbox_images import is_sandbox_image, render


def _wait(client: httpx.Client, url: str, key: str) -> dict:
    for _ in range(100):
        data = client.get(url, headers={"x-key": key}).json()
        if data["status"] != "Pending":
            return data
        time.sleep(0.05)
    raise AssertionError("still pending")


def test_keys_are_checked_like_bfl_does():
    with start_sandbox("bfl") as sb, httpx.Client() as http:
        missing = http.post(f"{sb.url}/v1/flux-pro-1.1", json={"prompt": "x"})
        wrong = http.post(f"{sb.url}/v1/flux-pro-1.1", json={"prompt": "x"}, headers={"x-key": "nope"})
        assert missing.status_code == wrong.status_code == 403
        assert wrong.json() == {"detail": "Not authenticated - Invalid Authentication"}
        assert sb.stats.paid == 0


def test_validation_errors_follow_the_openapi_document_and_its_error_schema():
    error_schema = bfl_openapi()["components"]["schemas"]["HTTPValidationError"]
    with start_sandbox("bfl") as sb, httpx.Client(headers={"x-key": sb.key}) as http:
        for path, body, field in [
            ("flux-pro-1.1", {"width": 1441}, "width"),
            ("flux-pro-1.1", {"safety_tolerance": 7}, "safety_tolerance"),
            ("flux-2-pro", {"width": 1024}, "prompt"),
            ("flux-2-pro", {"prompt": "x", "safety_tolerance": 6}, "safety_tolerance"),
            ("flux-pro-1.1-ultra", {"aspect_ratio": "3:1"}, "aspect_ratio"),
            ("flux-pro-1.0-fill", {"prompt": "x"}, "image"),
            ("flux-kontext-pro", {"prompt": "x", "output_format": "gif"}, "output_format"),
        ]:
            answer = http.post(f"{sb.url}/v1/{path}", json=body)
            assert answer.status_code == 422, (path, body)
            assert not validate(answer.json(), error_schema)
            assert field in [d["loc"][-1] for d in answer.json()["detail"]]
        assert sb.stats.paid == 0


def test_a_task_moves_from_pending_to_ready_with_an_expiring_signed_sample():
    with start_sandbox("bfl", latency=0.2, result_ttl=0.5) as sb, httpx.Client() as http:
        accepted = http.post(f"{sb.url}/v1/flux-pro-1.1", json={"prompt": "p", "seed": 1}, headers={"x-key": sb.key})
        body = accepted.json()
        assert accepted.status_code == 200 and body["cost"] == 4
        assert not validate(body, bfl_openapi()["components"]["schemas"]["AsyncResponse"])
        polling = httpx.URL(body["polling_url"])
        assert polling.host == "localhost" and polling.path == "/poll/v1/get_result"  # not the submit host or path
        first = http.get(body["polling_url"], headers={"x-key": sb.key}).json()
        assert first["status"] == "Pending" and 0 <= first["progress"] < 1
        ready = _wait(http, body["polling_url"], sb.key)
        assert not validate(ready, bfl_openapi()["components"]["schemas"]["ResultResponse"])
        assert ready["status"] == "Ready" and ready["result"]["seed"] == 1
        # the unofficial client's path on the submit host answers too
        assert http.get(f"{sb.url}/v1/get_result", params={"id": body["id"]},
                        headers={"x-key": sb.key}).json()["status"] == "Ready"
        image = http.get(ready["result"]["sample"])
        assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size == (1024, 768)
        time.sleep(0.6)
        assert http.get(ready["result"]["sample"]).status_code == 403
        assert http.get(ready["result"]["sample"] + "0").status_code == 403


def test_unknown_tasks_and_moderation_use_the_documented_statuses():
    with start_sandbox("bfl", latency=0.05) as sb, httpx.Client(headers={"x-key": sb.key}) as http:
        lost = http.get(f"{sb.url}/v1/get_result", params={"id": "nope"}).json()
        assert lost["status"] == "Task not found"
        seen = set()
        for fault in ("moderate_request", "moderate_content", "fail"):
            sb.inject(fault)
            task = http.post(f"{sb.url}/v1/flux-pro-1.1", json={"prompt": "p"}).json()
            seen.add(_wait(http, task["polling_url"], sb.key)["status"])
        assert seen == {"Request Moderated", "Content Moderated", "Error"}
        enum = set(bfl_openapi()["components"]["schemas"]["StatusResponse"]["enum"])
        assert seen | {"Task not found", "Ready", "Pending"} == enum


def test_active_task_limit_and_credits_are_enforced():
    with start_sandbox("bfl", latency=5, credits=200) as sb, httpx.Client(headers={"x-key": sb.key}) as http:
        codes = [http.post(f"{sb.url}/v1/flux-kontext-max", json={"prompt": "p"}).status_code for _ in range(7)]
        assert codes == [200] * 6 + [429]
        codes = [http.post(f"{sb.url}/v1/flux-pro-1.1", json={"prompt": "p"}).status_code for _ in range(19)]
        assert codes == [200] * 18 + [429]  # 24 in all
        assert sb.stats.paid == 24 and sb.credits == pytest.approx(200 - 6 * 8 - 18 * 4)
    with start_sandbox("bfl", credits=3) as sb, httpx.Client(headers={"x-key": sb.key}) as http:
        assert http.post(f"{sb.url}/v1/flux-pro-1.1", json={"prompt": "p"}).status_code == 402
        assert http.get(f"{sb.url}/v1/credits").json() == {"credits": 3}


def test_flux2_is_priced_per_megapixel_and_sized_in_multiples_of_16():
    with start_sandbox("bfl") as sb, httpx.Client(headers={"x-key": sb.key}) as http:
        body = http.post(f"{sb.url}/v1/flux-2-pro", json={"prompt": "p", "width": 1448, "height": 1448}).json()
        assert body["output_mp"] == pytest.approx(2.07, abs=0.01)  # 1440 x 1440 after cropping to 16
        assert body["cost"] == pytest.approx(3 + 1.07 * 1.5, abs=0.02)


def test_sandbox_images_are_real_photos_deterministic_and_marked():
    a = render(seed=1, prompt="p", width=640, height=800, output_format="png")
    b = render(seed=1, prompt="p", width=640, height=800, output_format="png")
    c = render(seed=2, prompt="p", width=640, height=800, output_format="png")
    img = Image.open(io.BytesIO(a))
    assert a == b and a != c and img.size == (640, 800) and is_sandbox_image(img)
    # the face region is the astronaut's skin, not a painted label: warm, mid-bright pixels
    r, _g, bl = img.convert("RGB").resize((8, 10)).getpixel((4, 3))
    assert r > bl


def test_every_fault_name_is_known_and_bad_ones_are_refused():
    with start_sandbox("bfl") as sb:
        for fault in FAULTS:
            sb.inject(fault, count=0)
        with pytest.raises(ValueError):
            sb.inject("meteor")


def test_every_documented_generation_endpoint_has_a_schema():
    for path in ("/v1/flux-pro-1.1", "/v1/flux-pro-1.1-ultra", "/v1/flux-2-pro", "/v1/flux-2-flex",
                 "/v1/flux-2-klein-4b", "/v1/flux-kontext-max", "/v1/flux-pro-1.0-fill",
                 "/v1/flux-pro-1.1-ultra-finetuned"):
        assert request_schema(path) is not None
