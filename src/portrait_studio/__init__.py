"""Portrait Studio: photoreal AI portraits with FLUX, checked, labelled and reproducible."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
