"""Shared real photos and their analyses for the checklist tests (computed once per session)."""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image

from portrait_studio.analysis import Analysis, analyze
from portrait_studio.testing import corpus, photos


@cache
def photo(name: str) -> np.ndarray:
    if name == "astronaut":
        return np.asarray(photos.astronaut().convert("RGB"))
    if name == "group":
        return np.asarray(Image.open(photos.group_with_hands()).convert("RGB"))
    return np.asarray(Image.open(photos.face_recognition_photos()[name]).convert("RGB"))


@cache
def analysis(name: str) -> Analysis:
    return analyze(photo(name))


@cache
def corpus_photo(name: str) -> np.ndarray:
    """A calibration-corpus portrait (train, validation or fresh split) by name."""
    return corpus.load(name)


@cache
def corpus_analysis(name: str) -> Analysis:
    return analyze(corpus_photo(name))
