"""Honest labels on every exported portrait: XMP/IPTC/EXIF, a PNG `parameters` chunk, a
caption, and a C2PA manifest signed with the user's certificate.

The order is the whole trick, and `label_image` does it for you:

1. snapshot the file's original bytes (a provider's C2PA manifest, e.g. BFL's, is only
   valid on those exact bytes; they become the parent ingredient of our manifest);
2. the PNG text chunk `parameters` (AUTOMATIC1111's format, read by most image tools);
3. XMP / IPTC / EXIF through pyexiv2 (it keeps the text chunk);
4. the C2PA manifest, signed LAST: anything written after it breaks its data hash.

`verify` reads all of it back into a `LabelReport`, with the C2PA status as exactly one of
valid / untrusted / invalid / missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import __version__
from .config import C2paConfig
from .errors import StudioError

__all__ = [
    "COMPOSITE_SOURCE_TYPE",
    "GENERATION_ASSERTION",
    "TRAINED_SOURCE_TYPE",
    "C2paIngredient",
    "C2paReport",
    "C2paSigned",
    "LabelInfo",
    "LabelRecord",
    "LabelReport",
    "caption_for",
    "format_parameters",
    "image_format",
    "label_image",
    "parse_parameters",
    "read_c2pa",
    "sidecar_record",
    "sign_c2pa",
    "verify",
    "write_labels",
    "write_png_text",
]

_IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_SOURCE_TYPE = _IPTC_DST + "trainedAlgorithmicMedia"
COMPOSITE_SOURCE_TYPE = _IPTC_DST + "compositeWithTrainedAlgorithmicMedia"
GENERATION_ASSERTION = "org.portrait_studio.generation"
"""Our own C2PA assertion: the generation settings (no secrets, no file paths)."""

ImageFormat = Literal["png", "jpeg", "webp"]
_MIME: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class LabelInfo(BaseModel):
    """Everything a label says about how one image was made. Built by the runner from the
    Request/Result (`from_request`) or by hand for existing files (`portrait label`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str  # catalog id, e.g. "flux-1.1-pro-ultra"
    model_name: str | None = None  # display name; filled from the catalog when known
    model_version: str | None = None
    provider: str | None = None
    prompt: str
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    true_cfg_scale: float | None = None
    denoise: float | None = None
    reference_weight: float | None = None
    width: int | None = None
    height: int | None = None
    sampler: str | None = None
    scheduler: str | None = None
    loras: tuple[str, ...] = ()
    request_id: str | None = None
    run_id: str | None = None
    created: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(microsecond=0))
    creator: str | None = None
    credit: str | None = None
    caption: str | None = None  # overrides caption_for()
    is_composite: bool = False  # after a fix, upscale or composite
    edit: str | None = None  # what the fix/upscale/composite did, e.g. "eyes inpainted"
    parent_sha256: str | None = None
    sandbox: bool = False  # made by a provider sandbox: a test image, not the real API's output
    software: str = f"Portrait Studio {__version__}"

    @model_validator(mode="after")
    def _name_from_catalog(self) -> LabelInfo:
        if self.model_name is None:
            try:
                from .catalog import get_model

                object.__setattr__(self, "model_name", get_model(self.model).name)
            except StudioError:
                pass
        return self

    @property
    def ai_system(self) -> str:
        return self.model_name or self.model

    @property
    def ai_system_version(self) -> str:
        return self.model_version or self.model

    @property
    def digital_source_type(self) -> str:
        return COMPOSITE_SOURCE_TYPE if self.is_composite else TRAINED_SOURCE_TYPE

    @classmethod
    def from_request(cls, request: Any, **overrides: Any) -> LabelInfo:
        """From a `records.Request` (duck-typed); `overrides` set creator, credit, created ..."""
        fields: dict[str, Any] = {
            "model": request.model,
            "provider": request.provider,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "steps": request.steps,
            "guidance": request.guidance,
            "true_cfg_scale": request.true_cfg_scale,
            "denoise": request.denoise,
            "reference_weight": request.reference_weight,
            "width": request.width,
            "height": request.height,
            "loras": tuple(lora.name or Path(lora.path).name for lora in request.loras),
            "request_id": request.request_id,
            "run_id": request.run_id,
        }
        fields.update(overrides)
        return cls(**fields)


def caption_for(info: LabelInfo) -> str:
    """The human-visible disclosure line (caption / alt text)."""
    if info.caption:
        return info.caption
    day = info.created.date().isoformat()
    if info.sandbox:
        return f"SANDBOX test image (not from the real API): {caption_for(info.model_copy(update={'sandbox': False}))}"
    if info.is_composite:
        what = f", AI-edited ({info.edit})" if info.edit else ", AI-edited"
        return f"AI-generated portrait via {info.ai_system}{what}, {day}"
    return f"AI-generated portrait via {info.ai_system}, {day}"


def sidecar_record(info: LabelInfo) -> dict[str, Any]:
    """What the run's sidecar (run.json or `<image>.json`) says about the labels."""
    return {
        "caption": caption_for(info),
        "alt_text": caption_for(info),
        "digital_source_type": info.digital_source_type,
        "ai_system": info.ai_system,
        "ai_system_version": info.ai_system_version,
        "provider": info.provider,
        "prompt": info.prompt,
        "parameters": format_parameters(info),
        "creator": info.creator,
        "credit": info.credit,
        "is_composite": info.is_composite,
        "edit": info.edit,
        "parent_sha256": info.parent_sha256,
        "sandbox": info.sandbox,
        "request_id": info.request_id,
        "run_id": info.run_id,
        "created": info.created.isoformat(),
        "software": info.software,
    }


# --- the A1111 `parameters` text -----------------------------------------------------------


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if re.search(r'[,:"\n]', value) else value


def format_parameters(info: LabelInfo) -> str:
    """AUTOMATIC1111's `parameters` text: prompt, `Negative prompt:` line, `Key: value, …` line."""
    pairs: list[tuple[str, Any]] = [
        ("Steps", info.steps),
        ("Sampler", info.sampler),
        ("Schedule type", info.scheduler),
        ("CFG scale", info.guidance),
        ("True CFG scale", info.true_cfg_scale),
        ("Seed", info.seed),
        ("Size", f"{info.width}x{info.height}" if info.width and info.height else None),
        ("Model", info.model),
        ("Provider", info.provider),
        ("Denoising strength", info.denoise),
        ("Reference weight", info.reference_weight),
        ("Lora", ", ".join(info.loras) if info.loras else None),
        ("Source type", "composite" if info.is_composite else "generated"),
        ("Edit", info.edit),
        ("Parent", info.parent_sha256),
        ("Sandbox", "yes (test image, not the real API)" if info.sandbox else None),
        ("Request id", info.request_id),
        ("Run id", info.run_id),
        ("Version", info.software),
    ]
    settings = ", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs if v is not None and v != "")
    lines = [info.prompt.strip()]
    if info.negative_prompt:
        lines.append(f"Negative prompt: {info.negative_prompt.strip()}")
    lines.append(settings)
    return "\n".join(lines)


_PAIR = re.compile(r'\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_parameters(text: str) -> dict[str, str]:
    """Parse AUTOMATIC1111 `parameters` text into fields (`prompt`, `Negative prompt`, `Seed` …)."""
    lines = text.strip().split("\n")
    fields: dict[str, str] = {}
    settings = lines[-1] if len(lines) > 1 and len(_PAIR.findall(lines[-1])) >= 2 else ""
    body = lines[:-1] if settings else lines
    prompt: list[str] = []
    negative: list[str] = []
    for line in body:
        if line.startswith("Negative prompt:") or negative:
            negative.append(line.removeprefix("Negative prompt:").strip())
        else:
            prompt.append(line)
    fields["prompt"] = "\n".join(prompt).strip()
    if negative:
        fields["Negative prompt"] = "\n".join(negative).strip()
    for key, value in _PAIR.findall(settings):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        fields[key.strip()] = value.strip()
    return fields


# --- file formats -------------------------------------------------------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def image_format(data: bytes) -> ImageFormat:
    """Sniff PNG / JPEG / WebP from the bytes (extensions lie)."""
    if data.startswith(_PNG_SIG):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise StudioError("not a PNG, JPEG or WebP image", hint="export the image as PNG, JPEG or WebP first")


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], len(_PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _text_key(kind: bytes, body: bytes) -> bytes | None:
    return body.split(b"\0", 1)[0] if kind in (b"tEXt", b"iTXt", b"zTXt") else None


def write_png_text(path: str | os.PathLike[str], key: str, text: str) -> None:
    """Set one PNG text chunk, keeping every other chunk byte for byte (no re-encode).

    Replacing chunks in place, rather than re-saving through Pillow, keeps a provider's
    C2PA chunk (`caBX`), the ICC profile and the exact pixels. Latin-1 text goes in `tEXt`
    (what most readers expect); anything else in UTF-8 `iTXt`.
    """
    p = Path(path)
    data = p.read_bytes()
    if not data.startswith(_PNG_SIG):
        raise StudioError(f"{p}: not a PNG file")
    try:
        new = _chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        new = _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + text.encode("utf-8"))
    out = [_PNG_SIG]
    for kind, body in _chunks(data):
        if _text_key(kind, body) == key.encode("latin-1"):
            continue
        if kind == b"IDAT" and new:
            out.append(new)
            new = b""
        out.append(_chunk(kind, body))
    p.write_bytes(b"".join(out))


def _exif_comment(text: str) -> str:
    """EXIF UserComment as exiv2 wants it: ASCII when possible (readable everywhere)."""
    return f"charset=Ascii {text}" if text.isascii() else f"charset=Unicode {text}"


def write_labels(path: str | os.PathLike[str], info: LabelInfo) -> list[str]:
    """Write the `parameters` text and XMP/IPTC/EXIF labels into `path`; returns the keys written.

    Does not sign: call `sign_c2pa` afterwards (or use `label_image`, which orders it all).
    """
    import pyexiv2

    p = Path(path)
    fmt = image_format(p.read_bytes()[:16])
    caption = caption_for(info)
    parameters = format_parameters(info)
    written: list[str] = []
    if fmt == "png":
        write_png_text(p, "parameters", parameters)
        written.append("PNG:parameters")

    xmp: dict[str, Any] = {
        "Xmp.Iptc4xmpExt.DigitalSourceType": info.digital_source_type,
        "Xmp.Iptc4xmpExt.AISystemUsed": info.ai_system,
        "Xmp.Iptc4xmpExt.AISystemVersionUsed": info.ai_system_version,
        "Xmp.Iptc4xmpExt.AIPromptInformation": info.prompt,
        "Xmp.dc.description": {'lang="x-default"': caption},
        "Xmp.xmp.CreatorTool": info.software,
        "Xmp.xmp.CreateDate": info.created.isoformat(),
    }
    if info.creator:
        xmp["Xmp.dc.creator"] = [info.creator]
        xmp["Xmp.Iptc4xmpExt.AIPromptWriterName"] = info.creator
    if info.credit:
        xmp["Xmp.photoshop.Credit"] = info.credit
    exif: dict[str, str] = {
        "Exif.Image.ImageDescription": caption,
        "Exif.Image.Software": info.software,
    }
    if info.creator:
        exif["Exif.Image.Artist"] = info.creator
    if fmt != "png":  # A1111 keeps `parameters` in UserComment for JPEG and WebP
        exif["Exif.Photo.UserComment"] = _exif_comment(parameters)
    iptc: dict[str, Any] = {"Iptc.Application2.Caption": caption}
    if info.credit:
        iptc["Iptc.Application2.Credit"] = info.credit
    if info.creator:
        iptc["Iptc.Application2.Byline"] = [info.creator]

    with pyexiv2.Image(str(p)) as img:
        img.modify_xmp(xmp)
        written += list(xmp)
        img.modify_exif(exif)
        written += list(exif)
        if fmt != "webp":  # exiv2 has no IPTC-IIM block for WebP; XMP carries the same fields
            img.modify_iptc(iptc)
            written += list(iptc)
    return written


# --- C2PA ---------------------------------------------------------------------------------


class C2paSigned(BaseModel):
    """What `sign_c2pa` put into the file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest_bytes: int
    actions: list[str]
    digital_source_type: str
    parent: str | None = None  # title of the parent ingredient
    parent_sha256: str | None = None
    parent_had_manifest: bool = False


def _read_manifest_present(data: bytes, mime: str) -> bool:
    import io

    import c2pa

    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
    except Exception:  # a corrupt store still counts as "there was one"
        return True
    if reader is None:
        return False
    reader.close()
    return True


def _generation_assertion(info: LabelInfo) -> dict[str, Any]:
    data = {
        "model": info.model,
        "ai_system": info.ai_system,
        "ai_system_version": info.ai_system_version,
        "provider": info.provider,
        "prompt": info.prompt,
        "negative_prompt": info.negative_prompt,
        "seed": info.seed,
        "steps": info.steps,
        "guidance": info.guidance,
        "true_cfg_scale": info.true_cfg_scale,
        "denoise": info.denoise,
        "reference_weight": info.reference_weight,
        "width": info.width,
        "height": info.height,
        "sampler": info.sampler,
        "loras": list(info.loras),
        "request_id": info.request_id,
        "run_id": info.run_id,
        "edit": info.edit,
        "parent_sha256": info.parent_sha256,
    }
    return {"label": GENERATION_ASSERTION, "data": {k: v for k, v in data.items() if v not in (None, [], "")}}


def sign_c2pa(
    path: str | os.PathLike[str],
    cert_chain_pem: bytes | str,
    private_key_pem: bytes | str,
    info: LabelInfo,
    algorithm: str = "es256",
    ingredient_from: str | os.PathLike[str] | bytes | None = None,
) -> C2paSigned:
    """Embed a C2PA manifest in `path`, signed with the leaf+CA chain. Call it LAST.

    - No parent: one `c2pa.created` action with the digital source type.
    - A parent (`ingredient_from`: the pre-edit file or its original bytes; or, when not
      given, the file itself if it already carries a manifest, as BFL outputs do): the
      parent becomes a `parentOf` ingredient (its own manifest kept inside ours), then
      `c2pa.opened` and `c2pa.edited` (composite) or `c2pa.edited.metadata` (labels only).
    """
    import io

    import c2pa

    p = Path(path)
    data = p.read_bytes()
    fmt = image_format(data[:16])
    mime = _MIME[fmt]

    parent_bytes: bytes | None
    parent_title: str | None = None
    if isinstance(ingredient_from, bytes):
        parent_bytes, parent_title = ingredient_from, f"original {p.name}"
    elif ingredient_from is not None:
        parent_bytes, parent_title = Path(ingredient_from).read_bytes(), Path(ingredient_from).name
    elif _read_manifest_present(data, mime):
        parent_bytes, parent_title = data, f"original {p.name}"
    else:
        parent_bytes = None

    agent = {"name": "Portrait Studio", "version": __version__}
    actions: list[dict[str, Any]]
    if parent_bytes is None:
        actions = [
            {"action": "c2pa.created", "digitalSourceType": info.digital_source_type, "softwareAgent": agent}
        ]
    else:
        edited: dict[str, Any] = {
            "action": "c2pa.edited" if info.is_composite else "c2pa.edited.metadata",
            "digitalSourceType": info.digital_source_type,
            "softwareAgent": agent,
        }
        if info.edit:
            edited["description"] = info.edit
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": ["parent"]}}, edited]

    manifest = {
        "claim_generator_info": [agent],
        "title": p.name,
        "format": mime,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}, _generation_assertion(info)],
    }
    cert = cert_chain_pem.encode() if isinstance(cert_chain_pem, str) else cert_chain_pem
    key = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm.lower().encode(), cert, key, None))
        with c2pa.Builder(manifest) as builder:
            parent_fmt: str | None = None
            if parent_bytes is not None:
                parent_fmt = _MIME[image_format(parent_bytes[:16])]
                builder.add_ingredient(
                    {"title": parent_title, "relationship": "parentOf", "label": "parent"},
                    parent_fmt,
                    io.BytesIO(parent_bytes),
                )
            out = io.BytesIO()
            manifest_bytes = builder.sign(signer, mime, io.BytesIO(data), out)
        signer.close()
    except c2pa.C2paError as exc:
        raise StudioError(
            f"C2PA signing failed: {exc}",
            hint="use a leaf certificate issued by a CA (not self-signed), with the chain leaf+CA in one PEM",
        ) from exc
    p.write_bytes(out.getvalue())
    return C2paSigned(
        manifest_bytes=len(manifest_bytes),
        actions=[a["action"] for a in actions],
        digital_source_type=info.digital_source_type,
        parent=parent_title,
        parent_sha256=hashlib.sha256(parent_bytes).hexdigest() if parent_bytes is not None else None,
        parent_had_manifest=parent_bytes is not None
        and _read_manifest_present(parent_bytes, parent_fmt or mime),
    )


# --- the whole sequence -------------------------------------------------------------------


class LabelRecord(BaseModel):
    """What `label_image` wrote: goes into the ledger, run.json and the audit bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    format: ImageFormat
    sha256_before: str
    sha256: str
    caption: str
    digital_source_type: str
    fields: list[str]
    c2pa: C2paSigned | None = None
    sidecar: str | None = None
    warnings: list[str] = Field(default_factory=list)
    info: LabelInfo


def _pem(value: str) -> bytes:
    """A PEM given inline or as a file path (config.toml holds paths)."""
    return value.encode() if "-----BEGIN" in value else Path(value).expanduser().read_bytes()


def _refuse_secrets(what: str, blob: bytes, secrets: Iterable[str]) -> None:
    for secret in secrets:
        if secret and len(secret) >= 8 and secret.encode() in blob:
            raise StudioError(
                f"{what} contains an API key",
                hint="remove the key from the prompt or fields; keys belong in keys.json or the environment",
            )


def label_image(
    path: str | os.PathLike[str],
    info: LabelInfo,
    c2pa: C2paConfig | None = None,
    *,
    ingredient_from: str | os.PathLike[str] | None = None,
    sidecar: bool = False,
    secrets: Iterable[str] = (),
) -> LabelRecord:
    """Label `path` in place, in the only safe order: text chunk, XMP/IPTC/EXIF, then C2PA.

    `ingredient_from` is the parent file of a fix/upscale/composite (its manifest is kept as
    an ingredient). A provider manifest already in the file is kept the same way, from the
    original bytes snapshotted before anything is written. `secrets` (`Studio.secrets()`)
    are checked against everything written; a match refuses the label.
    """
    secrets = [s for s in secrets if s]
    _refuse_secrets("the label", info.model_dump_json().encode(), secrets)
    p = Path(path)
    original = p.read_bytes()
    fmt = image_format(original[:16])
    warnings: list[str] = []
    had_manifest = _read_manifest_present(original, _MIME[fmt])

    fields = write_labels(p, info)
    signed: C2paSigned | None = None
    if c2pa is not None and c2pa.cert_chain and c2pa.private_key:
        parent: str | os.PathLike[str] | bytes | None = ingredient_from
        if parent is None and had_manifest:
            parent = original
        signed = sign_c2pa(p, _pem(c2pa.cert_chain), _pem(c2pa.private_key), info, c2pa.algorithm, parent)
        fields.append("C2PA")
    elif had_manifest:
        warnings.append(
            "the file carried a C2PA manifest that these labels invalidate; configure [c2pa] "
            "cert_chain and private_key so it is kept as a signed ingredient"
        )
    else:
        warnings.append("no C2PA manifest: configure [c2pa] cert_chain and private_key to sign")

    sidecar_path: str | None = None
    if sidecar:
        sc = p.with_name(p.name + ".json")
        blob = json.dumps(sidecar_record(info), indent=2, ensure_ascii=False)
        _refuse_secrets("the sidecar", blob.encode(), secrets)
        sc.write_text(blob)
        sidecar_path = str(sc)
    final = p.read_bytes()
    _refuse_secrets(str(p), final, secrets)
    return LabelRecord(
        path=str(p),
        format=fmt,
        sha256_before=hashlib.sha256(original).hexdigest(),
        sha256=hashlib.sha256(final).hexdigest(),
        caption=caption_for(info),
        digital_source_type=info.digital_source_type,
        fields=fields,
        c2pa=signed,
        sidecar=sidecar_path,
        warnings=warnings,
        info=info,
    )


# --- reading it all back ------------------------------------------------------------------

C2paStatus = Literal["valid", "untrusted", "invalid", "missing"]
_UNTRUSTED = "signingCredential.untrusted"


class C2paIngredient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str | None
    relationship: str | None
    status: C2paStatus
    codes: list[str] = Field(default_factory=list)
    signer: str | None = None


class C2paReport(BaseModel):
    """The C2PA side of `verify`. `status` is exactly one of valid / untrusted / invalid / missing:
    valid = signature and hashes check out and the signer chains to a trust anchor;
    untrusted = intact, but the signer is not in the trust list; invalid = the file or
    manifest was changed after signing (or cannot be read); missing = no manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: C2paStatus
    state: str | None = None  # the SDK's own word: Trusted / Valid / Invalid
    failures: list[str] = Field(default_factory=list)  # validation codes
    informational: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    digital_source_types: list[str] = Field(default_factory=list)
    signer: str | None = None
    claim_generator: str | None = None
    generation: dict[str, Any] | None = None
    ingredients: list[C2paIngredient] = Field(default_factory=list)
    error: str | None = None


class LabelReport(BaseModel):
    """Every label read back from one image file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    format: ImageFormat | None = None
    sha256: str
    digital_source_type: str | None = None
    ai_system: str | None = None
    ai_system_version: str | None = None
    prompt: str | None = None
    caption: str | None = None
    creator: list[str] = Field(default_factory=list)
    credit: str | None = None
    software: str | None = None
    iptc_caption: str | None = None
    iptc_credit: str | None = None
    exif_description: str | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    c2pa: C2paReport
    problems: list[str] = Field(default_factory=list)

    @property
    def labelled(self) -> bool:
        """Says it is AI media, in the standard field, with a caption."""
        return self.digital_source_type in (TRAINED_SOURCE_TYPE, COMPOSITE_SOURCE_TYPE) and bool(self.caption)

    @property
    def ok(self) -> bool:
        return self.labelled and self.c2pa.status != "invalid"

    def summary(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "labelled": self.labelled, "ok": self.ok}


def _status_from(state: str | None, failures: list[str], success: list[str]) -> C2paStatus:
    hard = [c for c in failures if c != _UNTRUSTED]
    if state == "Invalid" or hard:
        return "invalid"
    if state == "Trusted" or "signingCredential.trusted" in success:
        return "valid"
    return "untrusted"


def _codes(results: dict[str, Any] | None, kind: str) -> list[str]:
    if not results:
        return []
    store = results.get("activeManifest") or {}
    return [str(item.get("code")) for item in store.get(kind, [])]


def _signer(manifest: dict[str, Any] | None) -> str | None:
    info = (manifest or {}).get("signature_info") or {}
    parts = [info.get("common_name"), info.get("issuer")]
    return " / ".join(str(x) for x in parts if x) or None


def read_c2pa(data: bytes, trust_anchors_pem: str | None = None) -> C2paReport:
    """Validate the embedded C2PA manifest store of an image's bytes."""
    import io

    import c2pa

    try:
        mime = _MIME[image_format(data[:16])]
    except StudioError as exc:
        return C2paReport(status="missing", error=str(exc))
    context = (
        c2pa.Context.from_dict({"trust": {"trust_anchors": trust_anchors_pem}}) if trust_anchors_pem else None
    )
    try:
        reader = (
            c2pa.Reader(mime, io.BytesIO(data), None, context)
            if context
            else c2pa.Reader(mime, io.BytesIO(data))
        )
    except c2pa.C2paError.ManifestNotFound:
        return C2paReport(status="missing")
    except c2pa.C2paError as exc:
        return C2paReport(status="invalid", error=f"{type(exc).__name__.lstrip('_')}: {exc}")
    with reader:
        store = json.loads(reader.json())
        state = store.get("validation_state")
        results = store.get("validation_results")
        manifest = reader.get_active_manifest() or {}
    failures, success = _codes(results, "failure"), _codes(results, "success")
    actions: list[str] = []
    sources: list[str] = []
    generation: dict[str, Any] | None = None
    for assertion in manifest.get("assertions", []):
        label = str(assertion.get("label", ""))
        if label.startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                actions.append(str(action.get("action")))
                if action.get("digitalSourceType"):
                    sources.append(str(action["digitalSourceType"]))
        elif label == GENERATION_ASSERTION:
            generation = dict(assertion.get("data") or {})
    manifests = store.get("manifests", {})
    # An ingredient's stored results are from when it was added; the reader's deltas say
    # what changed now (e.g. its signer is trusted under *these* anchors).
    deltas = {
        str(d.get("ingredientAssertionURI", "")).rsplit("/", 1)[-1]: d.get("validationDeltas") or {}
        for d in (results or {}).get("ingredientDeltas", [])
    }
    ingredients = []
    for ing in manifest.get("ingredients", []):
        ing_results = ing.get("validation_results")
        delta = deltas.get(str(ing.get("label")), {})
        ing_ok = _codes(ing_results, "success") + [str(c.get("code")) for c in delta.get("success", [])]
        ing_fail = _codes(ing_results, "failure") + [str(c.get("code")) for c in delta.get("failure", [])]
        if "signingCredential.trusted" in ing_ok:
            ing_fail = [c for c in ing_fail if c != _UNTRUSTED]
        has_manifest = bool(ing.get("active_manifest"))
        ingredients.append(
            C2paIngredient(
                title=ing.get("title"),
                relationship=ing.get("relationship"),
                status=_status_from(None, ing_fail, ing_ok) if has_manifest else "missing",
                codes=ing_fail,
                signer=_signer(manifests.get(ing.get("active_manifest"))) if has_manifest else None,
            )
        )
    generators = manifest.get("claim_generator_info") or []
    generator = (
        " ".join(str(generators[0].get(k, "")) for k in ("name", "version")).strip() if generators else None
    )
    return C2paReport(
        status=_status_from(state, failures, success),
        state=state,
        failures=failures,
        informational=_codes(results, "informational"),
        actions=actions,
        digital_source_types=sources,
        signer=_signer(manifest),
        claim_generator=generator or manifest.get("claim_generator"),
        generation=generation,
        ingredients=ingredients,
    )


def _xmp_get(xmp: dict[str, Any], name: str) -> Any:
    for prefix in ("Xmp.iptcExt.", "Xmp.Iptc4xmpExt."):
        if prefix + name in xmp:
            return xmp[prefix + name]
    return None


def _lang_alt(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get('lang="x-default"') or next(iter(value.values()), None)
    return str(value) if value else None


def _png_texts(data: bytes) -> dict[str, str]:
    texts: dict[str, str] = {}
    for kind, body in _chunks(data):
        key, _, rest = body.partition(b"\0")
        try:
            if kind == b"tEXt":
                texts[key.decode("latin-1")] = rest.decode("latin-1")
            elif kind == b"zTXt":
                texts[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
            elif kind == b"iTXt":
                flag, _method, tail = rest[0], rest[1], rest[2:]
                text = tail.split(b"\0", 2)[2]
                texts[key.decode("latin-1")] = (zlib.decompress(text) if flag else text).decode("utf-8")
        except (ValueError, IndexError, zlib.error):
            continue
    return texts


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return str(value) if value else None


def verify(path: str | os.PathLike[str], trust_anchors_pem: str | None = None) -> LabelReport:
    """Read back every label of one image and validate its C2PA manifest.

    `trust_anchors_pem`: the CA certificate(s) you trust (PEM text). Without it a correctly
    signed file reports `untrusted`, since only trust anchors can make it `valid`.
    """
    import pyexiv2

    p = Path(path)
    data = p.read_bytes()
    problems: list[str] = []
    try:
        fmt: ImageFormat | None = image_format(data[:16])
    except StudioError as exc:
        fmt = None
        problems.append(str(exc))
    xmp: dict[str, Any] = {}
    exif: dict[str, Any] = {}
    iptc: dict[str, Any] = {}
    if fmt:
        try:
            with pyexiv2.ImageData(data) as img:
                xmp, exif = img.read_xmp(), img.read_exif()
                iptc = img.read_iptc() if fmt != "webp" else {}
        except Exception as exc:  # exiv2 raises plain RuntimeError on damaged files
            problems.append(f"metadata unreadable: {exc}")
    params_text: str | None = None
    if fmt == "png":
        params_text = _png_texts(data).get("parameters")
    elif exif.get("Exif.Photo.UserComment"):
        params_text = re.sub(r"^charset=\w+\s", "", str(exif["Exif.Photo.UserComment"]))
    c2pa_report = read_c2pa(data, trust_anchors_pem)

    dst = _xmp_get(xmp, "DigitalSourceType")
    caption = _lang_alt(xmp.get("Xmp.dc.description"))
    if not dst:
        problems.append("no IPTC DigitalSourceType")
    elif dst not in (TRAINED_SOURCE_TYPE, COMPOSITE_SOURCE_TYPE):
        problems.append(f"DigitalSourceType is {dst}, not an AI source type")
    if not caption:
        problems.append("no caption (dc:description)")
    if c2pa_report.status == "invalid":
        problems.append(
            "C2PA manifest invalid: " + ", ".join(c2pa_report.failures or [c2pa_report.error or "?"])
        )
    creator = xmp.get("Xmp.dc.creator") or []
    return LabelReport(
        path=str(p),
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        digital_source_type=dst,
        ai_system=_xmp_get(xmp, "AISystemUsed"),
        ai_system_version=_xmp_get(xmp, "AISystemVersionUsed"),
        prompt=_xmp_get(xmp, "AIPromptInformation"),
        caption=caption,
        creator=[str(c) for c in (creator if isinstance(creator, list) else [creator])],
        credit=xmp.get("Xmp.photoshop.Credit"),
        software=exif.get("Exif.Image.Software") or xmp.get("Xmp.xmp.CreatorTool"),
        iptc_caption=_first(iptc.get("Iptc.Application2.Caption")),
        iptc_credit=_first(iptc.get("Iptc.Application2.Credit")),
        exif_description=exif.get("Exif.Image.ImageDescription"),
        parameters=parse_parameters(params_text) if params_text else {},
        c2pa=c2pa_report,
        problems=problems,
    )
