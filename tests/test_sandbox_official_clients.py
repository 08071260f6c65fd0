"""Second opinion on the sandboxes: the providers' own Python clients must work against them.

- BFL: `blackforest==0.1.3` (official), installed with --no-deps into a temporary folder
  (it pins an old Pillow) and put on sys.path only for these tests.
- fal: `fal-client`, which hard-codes https: the sandbox serves TLS with a throwaway
  certificate, trusted through SSL_CERT_FILE.
- Replicate: `replicate`, pointed at the sandbox with `base_url`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from portrait_studio.testing.sandbox import start_sandbox


@pytest.fixture(scope="session")
def blackforest_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("blackforest")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), "blackforest==0.1.3"],
        capture_output=True, text=True, timeout=180,
    )
    if done.returncode != 0 or not (target / "blackforest").exists():
        pytest.skip(f"pip could not fetch blackforest==0.1.3 from PyPI: {done.stderr.strip()[-300:]}")
    return target


@pytest.fixture
def blackforest(blackforest_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("requests", reason="blackforest needs requests at run time")
    monkeypatch.syspath_prepend(str(blackforest_path))
    import blackforest as module

    yield module
    for name in [n for n in sys.modules if n == "blackforest" or n.startswith("blackforest.")]:
        del sys.modules[name]


def test_official_blackforest_client_generates_and_polls_the_verbatim_url(blackforest, capsys):
    from blackforest.types.general.client_config import ClientConfig

    with start_sandbox("bfl", latency=0.2) as sb:
        client = blackforest.BFLClient(api_key=sb.key, base_url=sb.url)
        answer = client.generate("flux-pro-1.1", {"prompt": "portrait of an astronaut", "width": 768,
                                                  "height": 1024, "seed": 9})
        assert answer.polling_url.startswith(f"http://localhost:{sb.port}/poll/")
        result = client.get_polling_result(answer.id, ClientConfig(polling_interval=0.1, max_retries=50))
        assert result["seed"] == 9 and result["sample"].startswith("http://localhost")
        image = httpx.get(result["sample"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        assert sb.stats.paid == 1 and not sb.stats.unknown_fields


def test_official_blackforest_client_sees_validation_and_auth_errors(blackforest, capsys):
    with start_sandbox("bfl") as sb:
        bad_key = blackforest.BFLClient(api_key="wrong", base_url=sb.url)
        with pytest.raises(blackforest.client.BFLError):
            bad_key._request("POST", "/v1/flux-pro-1.1", json={"prompt": "x"})
        client = blackforest.BFLClient(api_key=sb.key, base_url=sb.url)
        with pytest.raises(blackforest.client.BFLError):
            client._request("POST", "/v1/flux-pro-1.1", json={"prompt": "x", "width": 1000})
        assert sb.stats.rejected[422] == 1 and sb.stats.paid == 0


def test_official_fal_client_runs_the_queue_protocol(monkeypatch: pytest.MonkeyPatch):
    import fal_client
    import fal_client.client as fal_module

    with start_sandbox("fal", latency=0.3) as sb:
        monkeypatch.setenv("SSL_CERT_FILE", sb.ca_file)
        monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", f"{sb.url}/")
        client = fal_client.SyncClient(key=sb.key)
        handle = client.submit("fal-ai/flux-pro/v1.1-ultra", {"prompt": "portrait", "aspect_ratio": "3:4",
                                                                "seed": 4})
        # status/result URLs use owner/app only, on another host name
        assert handle.status_url.startswith(f"https://localhost:{sb.port}/fal-ai/flux-pro/requests/")
        first = handle.status()
        assert isinstance(first, (fal_client.Queued, fal_client.InProgress))
        output = handle.get()
        assert output["seed"] == 4 and output["has_nsfw_concepts"] == [False]
        assert isinstance(handle.status(), fal_client.Completed)
        with httpx.Client(verify=__import__("ssl").create_default_context(cafile=sb.ca_file)) as http:
            assert http.get(output["images"][0]["url"]).status_code == 200
        with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
            client.submit("fal-ai/flux-pro/v1.1", {"prompt": "x", "safety_tolerance": 2})
        assert caught.value.status_code == 422
        assert sb.stats.paid == 1


def test_official_replicate_client_runs_predictions_with_prefer_wait():
    import replicate
    from replicate.exceptions import ModelError, ReplicateError

    with start_sandbox("replicate", latency=0.3) as sb:
        client = replicate.Client(api_token=sb.key, base_url=sb.url)
        output = client.run("black-forest-labs/flux-1.1-pro-ultra", input={"prompt": "portrait", "seed": 2})
        url = output if isinstance(output, str) else output.url
        assert httpx.get(url).headers["content-type"] == "image/jpeg"
        prediction = client.models.predictions.create(model="black-forest-labs/flux-1.1-pro",
                                                      input={"prompt": "p", "aspect_ratio": "custom",
                                                             "width": 768, "height": 1024})
        assert prediction.status in ("starting", "processing") and prediction.version == "hidden"
        prediction.wait()
        assert prediction.status == "succeeded"
        with pytest.raises(ReplicateError) as caught:
            client.run("black-forest-labs/flux-1.1-pro", input={"prompt": "p", "width": 4000})
        assert caught.value.status == 422
        sb.inject("moderate_content")
        with pytest.raises(ModelError):
            client.run("black-forest-labs/flux-1.1-pro", input={"prompt": "p"})
        assert sb.stats.accepted == 3 and sb.stats.paid == 2  # charged by output: the flagged one is free
