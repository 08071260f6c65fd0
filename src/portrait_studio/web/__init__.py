"""The local web studio (`portrait serve`): brief builder, live shoots, gallery, compare view."""

from __future__ import annotations

from .app import create_app, http_status
from .server import ServerThread, check_bind, serve

__all__ = ["ServerThread", "check_bind", "create_app", "http_status", "serve"]
