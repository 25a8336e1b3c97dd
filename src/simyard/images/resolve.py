"""Registration side: turn an image reference into a checked OCI layout and its digest.

``skopeo copy`` writes whatever the reference names (an ``oci-archive`` or
``docker-archive`` file, an OCI layout folder, a registry image pinned by digest) into a
fresh OCI layout; the manifest's digest in that layout is the image's identity. Then the
config is read (its ``Env`` and ``WorkingDir`` are what the task gets) and every layer is
checked (:mod:`simyard.images.verify`) before anything could unpack it.

A registry is reached here only, at registration; a worker never pulls.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from simyard.images.layout import (
    TAG,
    BadLayout,
    ImageConfig,
    ImageManifest,
    blob_path,
    read_layout,
)
from simyard.images.reference import REGISTRY_TRANSPORT, parse_image_ref
from simyard.images.tools import ImageToolFailed, find_tool, run_tool
from simyard.images.verify import HostileImage, check_layer, check_media_type

COPY_TIMEOUT = 1800.0  # seconds: a large image from a slow registry
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


class ImageProblem(ValueError):
    """The image cannot be registered; ``where`` is the manifest key naming it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


@dataclass(frozen=True)
class ResolvedImage:
    """A checked image in an OCI layout on this machine."""

    ref: str
    layout: Path
    manifest: ImageManifest
    config: ImageConfig

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def size(self) -> int:
        return sum(d.size for d in self.manifest.blobs) + len(self.manifest.raw)


def host_architecture() -> str:
    """This machine's architecture as OCI names it (``amd64``, ``arm64``)."""
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def resolve_image(
    text: str, *, model_dir: Path, work: Path, where: str, max_layer_bytes: int
) -> ResolvedImage:
    """Copy, read and check the image ``text`` of the manifest key ``where``."""
    try:
        ref = parse_image_ref(text)
    except ValueError as exc:
        raise ImageProblem(where, str(exc)) from None
    skopeo = find_tool("skopeo")
    find_tool("umoci")  # the workers unpack with it; a model nobody can run is not registered
    if ref.transport == REGISTRY_TRANSPORT:
        source = str(ref)
    else:
        root = model_dir.resolve()
        path = (model_dir / ref.target).resolve()
        if root != path and root not in path.parents:
            raise ImageProblem(where, f"{ref.target!r} leads out of the model folder")
        if not path.exists():
            raise ImageProblem(where, f"{ref.target!r} not found in the model folder")
        source = f"{ref.transport}:{path}"
    work.mkdir(parents=True, exist_ok=True)
    layout = work / "layout"
    argv = [skopeo, "--insecure-policy", "copy", "--quiet", source, f"oci:{layout}:{TAG}"]
    try:
        run_tool(argv, timeout=COPY_TIMEOUT)
    except ImageToolFailed as exc:
        what = "cannot pull" if ref.transport == REGISTRY_TRANSPORT else "cannot read"
        raise ImageProblem(where, f"{what} the image {text}: {exc}") from None
    try:
        manifest = read_layout(layout)
        config = ImageConfig.parse(blob_path(layout, manifest.config.digest).read_bytes())
    except (BadLayout, OSError) as exc:
        raise ImageProblem(where, f"the image {text} is not a usable OCI image: {exc}") from None
    if config.os != "linux":
        raise ImageProblem(where, f"the image is for {config.os!r}; simyard runs Linux images")
    if config.architecture and config.architecture != host_architecture():
        raise ImageProblem(
            where,
            f"the image is for {config.architecture}, this machine is {host_architecture()}",
        )
    for number, layer in enumerate(manifest.layers, start=1):
        label = f"layer {number} ({layer.digest[:19]})"
        try:
            check_media_type(layer.media_type, label)
            check_layer(blob_path(layout, layer.digest), where=label, max_bytes=max_layer_bytes)
        except HostileImage as exc:
            raise ImageProblem(where, f"the image is refused: {exc}") from None
    return ResolvedImage(ref=text, layout=layout, manifest=manifest, config=config)
