"""The model manifest (``simyard.yaml``): schema, checks, parameters, input files, parameter files.

Pure code: it reads the model folder and the files it is given, and nothing else.
"""

from simyard.manifest.checks import MANIFEST_FILE, load_manifest
from simyard.manifest.schema import Manifest

__all__ = ["MANIFEST_FILE", "Manifest", "load_manifest"]
