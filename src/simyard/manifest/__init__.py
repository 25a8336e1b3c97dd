"""The model manifest (``simyard.yaml``): schema, checks, parameters, input files, parameter files.

Pure code: it reads the model folder and the files it is given, and nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simyard.manifest.checks import MANIFEST_FILE, load_manifest
    from simyard.manifest.schema import Manifest

# Loaded on first use, so that importing one light submodule (or the command line's
# remote commands) does not import them all.
_WHERE = {
    "MANIFEST_FILE": "simyard.manifest.checks",
    "load_manifest": "simyard.manifest.checks",
    "Manifest": "simyard.manifest.schema",
}

__all__ = [
    "MANIFEST_FILE",
    "Manifest",
    "load_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
