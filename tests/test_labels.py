"""Labels: XMP/IPTC/EXIF, the `parameters` chunk, captions and C2PA, read back independently."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import c2pa
import pyexiv2
import pytest
import typer
from PIL import Image, ImageEnhance
from PIL.PngImagePlugin import PngImageFile
from typer.testing import CliRunner

from portrait_studio.config import C2paConfig
from portrait_studio.errors import StudioError
from portrait_studio.labels import (
    COMPOSITE_SOURCE_TYPE,
    TRAINED_SOURCE_TYPE,
    LabelInfo,
    caption_for,
    format_parameters,
    label_image,
    parse_parameters,
    sidecar_record,
    sign_c2pa,
    verify,
)
from portrait_studio.testing.c2pa_test_ca import TestCa, make_test_ca
from portrait_studio.testing.photos import astronaut

FAKE_KEY = "bfl-sk-live-0123456789abcdef-DO-NOT-LEAK"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def portrait(tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    return astronaut()


@pytest.fixture
def signing(ca: TestCa) -> C2paConfig:
    return C2paConfig(cert_chain=str(ca.chain), private_key=str(ca.key))


def _info(**kw: object) -> LabelInfo:
    fields: dict[str, object] = {
        "model": "flux-1.1-pro-ultra",
        "provider": "bfl",
        "prompt": "studio headshot of a woman, Rembrandt light, 85mm, natural skin texture",
        "negative_prompt": "plastic skin, extra fingers",
        "seed": 1234,
        "steps": 28,
        "guidance": 3.5,
        "width": 768,
        "height": 1024,
        "sampler": "Euler",
        "request_id": "req_01TEST",
        "run_id": "run_01TEST",
        "creator": "Ann Example",
        "credit": "Example Studio",
    }
    fields.update(kw)
    return LabelInfo(**fields)  # type: ignore[arg-type]


def _save(img: Image.Image, path: Path) -> Path:
    img.save(path, quality=92) if path.suffix == ".jpg" else img.save(path)
    return path


def _flip_pixel_byte(path: Path) -> None:
    """Change one byte inside the compressed pixel data (not the metadata or manifest)."""
    data = bytearray(path.read_bytes())
    if data.startswith(b"\x89PNG"):
        idat = data.index(b"IDAT")
        pos = idat + 4 + 200
    else:  # JPEG: entropy-coded data ends right before the EOI marker
        pos = len(data) - 100
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_labels_round_trip_through_pyexiv2_and_c2pa(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig, ca: TestCa, ext: str
) -> None:
    path = _save(portrait, tmp_path / f"portrait.{ext}")
    info = _info()
    record = label_image(path, info, signing, sidecar=True)

    # pyexiv2, independently of verify()
    with pyexiv2.Image(str(path)) as img:
        xmp, exif, iptc = img.read_xmp(), img.read_exif(), img.read_iptc()
    assert xmp["Xmp.iptcExt.DigitalSourceType"] == TRAINED_SOURCE_TYPE
    assert xmp["Xmp.iptcExt.AISystemUsed"] == "FLUX1.1 [pro] Ultra"
    assert xmp["Xmp.iptcExt.AIPromptInformation"] == info.prompt
    assert xmp["Xmp.dc.description"] == {'lang="x-default"': caption_for(info)}
    assert xmp["Xmp.dc.creator"] == ["Ann Example"]
    assert xmp["Xmp.photoshop.Credit"] == "Example Studio"
    assert iptc["Iptc.Application2.Caption"] == caption_for(info)
    assert iptc["Iptc.Application2.Credit"] == "Example Studio"
    assert exif["Exif.Image.Software"].startswith("Portrait Studio ")

    # c2pa, independently of verify(): intact, created action, AI source type
    reader = c2pa.Reader(str(path))
    assert reader.get_validation_state() == "Valid"
    actions = reader.get_active_manifest()["assertions"][0]["data"]["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == TRAINED_SOURCE_TYPE
    reader.close()

    report = verify(path, ca.root.read_text())
    assert report.ok and report.labelled
    assert report.c2pa.status == "valid"
    assert (
        report.caption == "AI-generated portrait via FLUX1.1 [pro] Ultra, " + info.created.date().isoformat()
    )
    assert report.parameters["Seed"] == "1234"
    assert report.parameters["Size"] == "768x1024"
    assert report.parameters["Negative prompt"] == "plastic skin, extra fingers"
    assert report.c2pa.generation and report.c2pa.generation["seed"] == 1234
    assert record.c2pa and record.c2pa.actions == ["c2pa.created"]
    assert json.loads(Path(record.sidecar or "").read_text())["caption"] == caption_for(info)


def test_png_parameters_chunk_is_what_image_tools_read(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig
) -> None:
    path = _save(portrait, tmp_path / "p.png")
    label_image(path, _info(), signing)
    png = Image.open(path)
    assert isinstance(png, PngImageFile)
    text = png.text["parameters"]  # the way A1111-style readers get it
    assert text.splitlines()[0].startswith("studio headshot")
    assert text.splitlines()[1] == "Negative prompt: plastic skin, extra fingers"
    assert text.splitlines()[2].startswith(
        "Steps: 28, Sampler: Euler, CFG scale: 3.5, Seed: 1234, Size: 768x1024"
    )
    assert Image.open(path).convert("RGB").tobytes() == portrait.convert("RGB").tobytes()  # pixels untouched


def test_webp_gets_xmp_and_parameters_too(tmp_path: Path, portrait: Image.Image, signing: C2paConfig) -> None:
    path = _save(portrait, tmp_path / "p.webp")
    label_image(path, _info(), signing)
    report = verify(path)
    assert report.labelled and report.c2pa.status == "untrusted"
    assert report.parameters["Model"] == "flux-1.1-pro-ultra"


def test_parameters_with_commas_and_quotes_survive_the_round_trip() -> None:
    info = _info(sampler='DPM++ 2M, "Karras"', loras=("skin-detail", "film-grain"))
    fields = parse_parameters(format_parameters(info))
    assert fields["Sampler"] == 'DPM++ 2M, "Karras"'
    assert fields["Lora"] == "skin-detail, film-grain"
    assert fields["prompt"] == info.prompt
    assert fields["Run id"] == "run_01TEST"


# --- tampering and trust ------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_one_changed_byte_shows_as_invalid(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig, ca: TestCa, ext: str
) -> None:
    path = _save(portrait, tmp_path / f"p.{ext}")
    label_image(path, _info(), signing)
    assert verify(path, ca.root.read_text()).c2pa.status == "valid"
    _flip_pixel_byte(path)
    report = verify(path, ca.root.read_text())
    assert report.c2pa.status == "invalid"
    assert "assertion.dataHash.mismatch" in report.c2pa.failures
    assert not report.ok


def test_metadata_written_after_signing_breaks_the_signature(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig
) -> None:
    """Why label_image signs last: an XMP edit after signing is a change like any other."""
    path = _save(portrait, tmp_path / "p.jpg")
    label_image(path, _info(), signing)
    with pyexiv2.Image(str(path)) as img:
        img.modify_xmp({"Xmp.photoshop.Credit": "someone else"})
    assert verify(path).c2pa.status == "invalid"


def test_unsigned_and_untrusted_are_told_apart(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig
) -> None:
    plain = _save(portrait, tmp_path / "plain.jpg")
    assert verify(plain).c2pa.status == "missing"
    assert not verify(plain).labelled

    unsigned = _save(portrait, tmp_path / "unsigned.png")
    record = label_image(unsigned, _info(), None)
    assert record.c2pa is None and "no C2PA manifest" in record.warnings[0]
    report = verify(unsigned)
    assert report.labelled and report.c2pa.status == "missing" and report.ok

    signed = _save(portrait, tmp_path / "signed.png")
    label_image(signed, _info(), signing)
    report = verify(signed)  # no trust anchors given
    assert report.c2pa.status == "untrusted"
    assert report.c2pa.failures == ["signingCredential.untrusted"]


def test_self_signed_certificate_is_refused_with_a_fix(
    tmp_path: Path, portrait: Image.Image, ca: TestCa
) -> None:
    path = _save(portrait, tmp_path / "p.png")
    with pytest.raises(StudioError) as err:
        sign_c2pa(path, ca.root.read_bytes(), ca.key.read_bytes(), _info())
    assert err.value.hint and "self-signed" in err.value.hint


# --- lineage ------------------------------------------------------------------------------


def test_fixed_image_is_relabelled_as_composite_with_its_parent_as_ingredient(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig, ca: TestCa
) -> None:
    parent = _save(portrait, tmp_path / "portrait.png")
    label_image(parent, _info(), signing)

    # the "fix": brighten the face region, saved as a new file
    fixed_img = Image.open(parent).convert("RGB")
    box = (170, 60, 280, 170)
    fixed_img.paste(ImageEnhance.Brightness(fixed_img.crop(box)).enhance(1.15), box)
    fixed = _save(fixed_img, tmp_path / "portrait-fixed.png")

    info = _info(
        is_composite=True,
        edit="face relit",
        parent_sha256=hashlib.sha256(parent.read_bytes()).hexdigest(),
    )
    record = label_image(fixed, info, signing, ingredient_from=parent)
    assert record.c2pa and record.c2pa.parent == "portrait.png" and record.c2pa.parent_had_manifest

    report = verify(fixed, ca.root.read_text())
    assert report.digital_source_type == COMPOSITE_SOURCE_TYPE
    assert "AI-edited (face relit)" in (report.caption or "")
    assert report.c2pa.status == "valid"
    assert report.c2pa.actions == ["c2pa.opened", "c2pa.edited"]
    assert report.c2pa.digital_source_types == [COMPOSITE_SOURCE_TYPE]
    [ingredient] = report.c2pa.ingredients
    assert (ingredient.title, ingredient.relationship, ingredient.status) == (
        "portrait.png",
        "parentOf",
        "valid",
    )
    assert report.parameters["Source type"] == "composite"
    assert report.parameters["Parent"] == info.parent_sha256


def test_provider_manifest_is_kept_as_a_parent_ingredient(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig, ca: TestCa
) -> None:
    """A BFL output arrives signed by BFL; our labels must not throw that provenance away."""
    provider_ca = make_test_ca(tmp_path / "provider", common_name="Provider")
    delivered = _save(portrait, tmp_path / "delivered.jpg")
    sign_c2pa(delivered, provider_ca.chain.read_bytes(), provider_ca.key.read_bytes(), _info(creator=None))
    as_delivered = delivered.read_bytes()

    kept = tmp_path / "labelled.jpg"
    kept.write_bytes(as_delivered)
    label_image(kept, _info(), signing)
    anchors = ca.root.read_text() + provider_ca.root.read_text()
    report = verify(kept, anchors)
    assert report.c2pa.status == "valid"
    assert report.c2pa.actions == ["c2pa.opened", "c2pa.edited.metadata"]
    [ingredient] = report.c2pa.ingredients
    assert ingredient.status == "valid" and ingredient.signer and "Provider" in ingredient.signer

    # without our own key the provider's manifest cannot survive relabelling: say so
    unsigned = tmp_path / "unsigned.jpg"
    unsigned.write_bytes(as_delivered)
    record = label_image(unsigned, _info(), None)
    assert "invalidate" in record.warnings[0]


# --- secrets and the CLI ------------------------------------------------------------------


def _cli() -> typer.Typer:
    from portrait_studio.cli.labels import register

    app = typer.Typer()
    register(app)
    return app


def test_no_api_key_leaks_into_labelled_files(tmp_path: Path, portrait: Image.Image, ca: TestCa) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'creator = "Ann Example"\ncredit = "Example Studio"\n'
        f'[c2pa]\ncert_chain = "{ca.chain}"\nprivate_key = "{ca.key}"\ntrust_anchors = "{ca.root}"\n'
    )
    env = {"BFL_API_KEY": FAKE_KEY, "FAL_KEY": FAKE_KEY + "-fal"}
    runner = CliRunner()
    for ext in ("png", "jpg"):
        path = _save(portrait, tmp_path / f"p.{ext}")
        result = runner.invoke(
            _cli(),
            [
                "label",
                str(path),
                "--model",
                "flux-2-pro",
                "--prompt",
                "a portrait",
                "--seed",
                "7",
                "--home",
                str(home),
            ],
            env=env,
        )
        assert result.exit_code == 0, result.output
        for written in (path, Path(f"{path}.json")):
            blob = written.read_bytes()
            assert FAKE_KEY.encode() not in blob
            assert FAKE_KEY.encode("utf-16-le") not in blob and FAKE_KEY.encode("utf-16-be") not in blob
        check = runner.invoke(_cli(), ["verify", str(path), "--home", str(home)], env=env)
        assert check.exit_code == 0, check.output
        assert "valid" in check.output

    # a key pasted into a prompt is refused before anything is written
    path = _save(portrait, tmp_path / "pasted.png")
    before = path.read_bytes()
    with pytest.raises(StudioError, match="API key"):
        label_image(path, _info(prompt=f"portrait {FAKE_KEY}"), None, secrets=[FAKE_KEY])
    assert path.read_bytes() == before


def test_verify_cli_fails_on_unlabelled_or_tampered_images(
    tmp_path: Path, portrait: Image.Image, signing: C2paConfig, ca: TestCa
) -> None:
    good = _save(portrait, tmp_path / "good.jpg")
    label_image(good, _info(), signing)
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]

    ok = runner.invoke(_cli(), ["verify", str(good), "--trust", str(ca.root), *home], env={"COLUMNS": "220"})
    assert ok.exit_code == 0, ok.output
    assert "AI-generated portrait via FLUX1.1 [pro] Ultra" in ok.output  # not eaten as markup
    assert "valid" in ok.output

    bare = _save(portrait, tmp_path / "bare.png")
    tampered = tmp_path / "tampered.jpg"
    shutil.copy(good, tampered)
    _flip_pixel_byte(tampered)
    result = runner.invoke(_cli(), ["verify", str(good), str(bare), str(tampered), "--json", *home])
    assert result.exit_code == 1
    rows = {Path(r["path"]).name: r for r in json.loads(result.output)}
    assert rows["good.jpg"]["ok"] and rows["good.jpg"]["c2pa"]["status"] == "untrusted"
    assert rows["bare.png"]["labelled"] is False and rows["bare.png"]["c2pa"]["status"] == "missing"
    assert rows["tampered.jpg"]["c2pa"]["status"] == "invalid"


def test_sidecar_record_carries_the_caption_for_run_json() -> None:
    info = _info(is_composite=True, edit="upscaled 2x")
    record = sidecar_record(info)
    assert record["caption"].startswith(
        "AI-generated portrait via FLUX1.1 [pro] Ultra, AI-edited (upscaled 2x)"
    )
    assert record["digital_source_type"] == COMPOSITE_SOURCE_TYPE
    assert json.loads(json.dumps(record)) == record
    assert io.StringIO(record["parameters"]).readline().startswith("studio headshot")


def test_label_info_comes_straight_from_a_request_and_relabelling_does_not_stack(
    tmp_path: Path, portrait: Image.Image
) -> None:
    from portrait_studio.records import Request

    request = Request(
        model="flux-2-pro", provider="bfl", prompt="window-light portrait", seed=42, width=768, height=1024,
        guidance=3.0, run_id="run_X",
    )  # fmt: skip
    info = LabelInfo.from_request(request, creator="Ann Example")
    assert (info.ai_system, info.seed, info.request_id) == ("FLUX.2 [pro]", 42, request.request_id)

    path = _save(portrait, tmp_path / "p.png")
    label_image(path, info, None)
    label_image(path, info.model_copy(update={"seed": 43}), None)
    png = Image.open(path)
    assert isinstance(png, PngImageFile)
    assert png.text["parameters"].count("Seed:") == 1
    assert verify(path).parameters["Seed"] == "43"
    assert verify(path).parameters["Request id"] == request.request_id
