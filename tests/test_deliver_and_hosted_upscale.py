"""Delivery sizes and the hosted upscale route, on the engine: exact sizes, lineage, labels, money."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.brief import example_brief_path
from portrait_studio.labels import COMPOSITE_SOURCE_TYPE, verify
from portrait_studio.ledger import Ledger

BRIEF = example_brief_path("rembrandt-studio-headshot")


def test_a_4k_delivery_renders_natively_then_upscales_to_the_exact_size(cli, studio_home: Path) -> None:
    code, out, err = cli("shoot", BRIEF, "-m", "flux-kontext-pro", "--seed", "3", "--deliver", "4k", "--json")
    assert code == 0, err
    data = json.loads(out)
    delivered = [i for i in data["images"] if i["operation"] == "upscale"]
    (made,) = [i for i in data["images"] if i["operation"] == "generate"]
    (final,) = delivered
    assert (final["width"], final["height"]) == (2880, 3840)  # 4K long side 3840 at the brief's 3:4
    with Image.open(final["out_path"]) as im:
        assert im.size == (2880, 3840)
    label = verify(final["out_path"])
    assert label.labelled and label.digital_source_type == COMPOSITE_SOURCE_TYPE and "4k delivery" in (label.caption or "")
    with Ledger(studio_home / "ledger.db") as ledger:
        chain = ledger.lineage(final["image_sha256"])
        assert [r.operation for r in chain] == ["upscale", "generate"] and chain[1].id == made["id"]
        assert (made["width"], made["height"]) != (2880, 3840)  # rendered at the model's native size first
        (req,) = ledger.requests(data["run_id"])
        assert req.request.options["delivery"]["final_w"] == 2880


def test_the_hosted_upscaler_is_a_recorded_paid_request_and_its_answer_is_exact(cli, studio_home: Path,
                                                                              tmp_path: Path) -> None:
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", "--seed", "5", "--json")
    assert code == 0, err
    image = json.loads(out)["images"][0]["out_path"]
    code, out, err = cli("upscale", image, "--scale", "1.5", "--quality", "hosted", "--sandbox", "always", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["engine"] == "real-esrgan@fal" and tuple(data["size"]) == (1152, 1536)
    assert [s["operation"] for s in data["lineage"]] == ["generate", "upscale"]
    assert verify(data["path"]).labelled
    with Ledger(studio_home / "ledger.db") as ledger:
        (req,) = ledger.requests(data["run_id"])
        assert req.request.mode == "upscale" and req.status == "done" and req.sandbox
        assert ledger.spent(data["run_id"], sandbox=True).usd > 0


def test_upscale_auto_picks_the_hosted_route_when_its_key_is_set_and_says_so(cli, studio_home: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", "--seed", "6", "--json")
    assert code == 0, err
    image = json.loads(out)["images"][0]["out_path"]
    monkeypatch.setenv("FAL_KEY", "0123abcd-0000-0000-0000-000000000000:0123456789abcdef0123456789abcdef")
    code, out, err = cli("upscale", image, "--scale", "1.5", "--sandbox", "always")
    said = " ".join(out.split())
    assert code == 0, err
    assert "with real-esrgan@fal" in said
