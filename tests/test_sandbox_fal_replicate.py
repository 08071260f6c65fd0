"""fal's queue and Replicate's predictions, as their sandboxes and our clients speak them."""

from __future__ import annotations

import ssl
import time

import httpx
import pytest

from _hosted_helpers import get_model, photo_file, request
from portrait_studio.errors import InsufficientCredits, Moderated
from portrait_studio.providers.fal import FalOptions, FalProvider
from portrait_studio.providers.replicate import ReplicateOptions, ReplicateProvider
from portrait_studio.testing.sandbox import start_sandbox

FAST = {"poll_interval_s": 0.05, "poll_backoff": 1.0, "retry_backoff_s": 0.02}


def test_fal_status_is_202_until_completed_then_200_on_owner_app_urls():
    with start_sandbox("fal", latency=1.5) as sb, httpx.Client(  # queued for the first 0.45 s
        verify=ssl.create_default_context(cafile=sb.ca_file), headers={"authorization": f"Key {sb.key}"}
    ) as http:
        assert http.post(f"{sb.url}/fal-ai/flux-pro/v1.1", json={"prompt": "p"},
                         headers={"authorization": "Key wrong"}).status_code == 401
        task = http.post(f"{sb.url}/fal-ai/flux-pro/v1.1-ultra", json={"prompt": "p"}).json()
        assert "/fal-ai/flux-pro/requests/" in task["status_url"] and "v1.1-ultra" not in task["status_url"]
        seen = []
        for _ in range(200):
            answer = http.get(task["status_url"])
            seen.append((answer.status_code, answer.json()["status"]))
            if answer.status_code == 200:
                break
            time.sleep(0.03)
        assert seen[0] == (202, "IN_QUEUE") and (202, "IN_PROGRESS") in seen and seen[-1] == (200, "COMPLETED")
        output = http.get(task["response_url"]).json()
        assert set(output) == {"images", "seed", "has_nsfw_concepts", "prompt", "timings"}
        queued = http.post(f"{sb.url}/fal-ai/flux/dev", json={"prompt": "p"}).json()
        assert http.put(queued["cancel_url"]).status_code == 202


def test_replicate_prefer_wait_returns_a_finished_prediction_and_errors_are_problem_documents():
    with start_sandbox("replicate", latency=0.2) as sb, httpx.Client(
        headers={"authorization": f"Bearer {sb.key}"}
    ) as http:
        url = f"{sb.url}/v1/models/black-forest-labs/flux-1.1-pro/predictions"
        waited = http.post(url, json={"input": {"prompt": "p"}}, headers={"prefer": "wait=5"}).json()
        assert waited["status"] == "succeeded" and waited["version"] == "hidden" and waited["output"]
        quick = http.post(url, json={"input": {"prompt": "p"}}).json()
        assert quick["status"] == "starting" and quick["urls"]["get"].endswith(quick["id"])
        bad = http.post(url, json={"input": {"prompt": "p", "safety_tolerance": 9, "colour": "red"}})
        problem = bad.json()
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status", "detail"} <= set(problem) and len(problem["invalid_fields"]) == 2
        assert http.post(url, json={"input": {"prompt": "p"}},
                         headers={"authorization": "Bearer x"}).json()["status"] == 401
        canceled = http.post(f"{sb.url}/v1/predictions/{quick['id']}/cancel").json()
        assert canceled["status"] in ("canceled", "succeeded")


def test_fal_sends_safety_tolerance_as_a_string_and_uses_edit_apps_for_references(tmp_path):
    provider = FalProvider("k", models=get_model)
    model_id, body = provider.arguments(request("flux-1.1-pro", provider="fal", safety_tolerance=0))
    assert model_id == "fal-ai/flux-pro/v1.1" and body["safety_tolerance"] == "1"
    assert body["image_size"] == {"width": 768, "height": 1024}
    ref = photo_file(tmp_path, size=(64, 64))
    model_id, body = provider.arguments(request("flux-2-pro", provider="fal", images=(ref,), mode="reference"))
    assert model_id == "fal-ai/flux-2-pro/edit" and body["image_urls"][0].startswith("data:image/png;base64,")
    _model, body = provider.arguments(request("flux-1-dev", provider="fal", steps=28, guidance=3.5))
    assert body["num_inference_steps"] == 28 and body["guidance_scale"] == 3.5


def test_replicate_uses_its_own_input_names():
    provider = ReplicateProvider("k", models=get_model)
    model_id, body = provider.arguments(request("flux-1.1-pro", provider="replicate"))
    assert model_id == "black-forest-labs/flux-1.1-pro"
    assert body["aspect_ratio"] == "custom" and body["output_format"] == "jpg"
    _m, body = provider.arguments(request("flux-1.1-pro-ultra", provider="replicate", raw=True))
    assert body["aspect_ratio"] == "3:4" and body["raw"] is True
    _m, body = provider.arguments(request("flux-1-dev", provider="replicate", steps=30, guidance=3))
    assert body["num_inference_steps"] == 30 and body["guidance"] == 3 and body["aspect_ratio"] == "3:4"


async def test_fal_blanked_nsfw_output_is_reported_as_content_moderation():
    with start_sandbox("fal", latency=0.05) as sb:
        provider = FalProvider(sb.key, FalOptions(base_url=sb.url, verify=sb.ca_file, **FAST), models=get_model)
        sb.inject("moderate_request")
        with pytest.raises(Moderated) as caught:
            await provider.submit(request(provider="fal"))
        assert caught.value.stage == "request"
        sb.credits = 0
        with pytest.raises(InsufficientCredits):
            await provider.submit(request(provider="fal", seed=2))
        await provider.aclose()


async def test_replicate_without_prefer_wait_polls_to_the_end():
    with start_sandbox("replicate", latency=0.2) as sb:
        provider = ReplicateProvider(sb.key, ReplicateOptions(base_url=sb.url, wait_s=None, **FAST),
                                     models=get_model)
        result = await provider.submit(request(provider="replicate"))
        await provider.aclose()
        assert result.image and sb.stats.polls >= 2 and sb.stats.paid == 1
        assert "prefer" not in sb.stats.headers_seen[-1]
