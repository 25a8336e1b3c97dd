"""Read an OCI image layout (``index.json``, ``blobs/sha256/...``): its manifest and config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simyard.images.reference import DIGEST_RE

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TAG = "simyard"


class BadLayout(ValueError):
    """The layout, a blob or its digest is not what an OCI image layout holds."""


@dataclass(frozen=True)
class Descriptor:
    """A blob named by digest: its media type and size."""

    media_type: str
    digest: str
    size: int

    @classmethod
    def of(cls, data: Any) -> Descriptor:
        try:
            digest = str(data["digest"])
            if not DIGEST_RE.fullmatch(digest):
                raise BadLayout(f"unsupported digest {digest[:80]!r} (sha256 only)")
            return cls(str(data["mediaType"]), digest, int(data["size"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BadLayout):
                raise
            raise BadLayout(f"not a blob descriptor: {exc}") from None

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ImageConfig:
    """What of the image's config the task sees: its environment and working folder."""

    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    os: str = "linux"
    architecture: str = ""

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        try:
            data = json.loads(raw)
            config = data.get("config") or {}
            env = {}
            for item in config.get("Env") or []:
                key, _, value = str(item).partition("=")
                if key:
                    env[key] = value
            return cls(
                env=env,
                working_dir=str(config.get("WorkingDir") or ""),
                os=str(data.get("os") or "linux"),
                architecture=str(data.get("architecture") or ""),
            )
        except (ValueError, AttributeError, TypeError) as exc:
            raise BadLayout(f"the image config is not valid JSON: {exc}") from None

    def as_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "working_dir": self.working_dir,
            "os": self.os,
            "architecture": self.architecture,
        }


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class ImageManifest:
    """A parsed image manifest: the config blob and the layers, bottom first."""

    digest: str
    raw: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, digest: str, raw: bytes) -> ImageManifest:
        try:
            data = json.loads(raw)
            media = data.get("mediaType", OCI_MANIFEST)
            if media != OCI_MANIFEST or data.get("schemaVersion") != 2:
                raise BadLayout(f"not an OCI image manifest ({media})")
            return cls(
                digest,
                raw,
                Descriptor.of(data["config"]),
                tuple(Descriptor.of(d) for d in data.get("layers") or []),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, BadLayout):
                raise
            raise BadLayout(f"the image manifest is not valid: {exc}") from None

    @property
    def blobs(self) -> list[Descriptor]:
        return [self.config, *self.layers]


def read_layout(layout: Path) -> ImageManifest:
    """The one image of ``layout`` (as skopeo wrote it); BadLayout otherwise."""
    try:
        index = json.loads((layout / "index.json").read_bytes())
        manifests = index["manifests"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadLayout(f"not an OCI layout: {exc}") from None
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise BadLayout("the layout must hold exactly one image")
    top = Descriptor.of(manifests[0])
    raw = blob_path(layout, top.digest).read_bytes()
    return ImageManifest.parse(top.digest, raw)


def write_layout(layout: Path, manifest: ImageManifest) -> None:
    """The ``oci-layout`` and ``index.json`` of a layout holding ``manifest`` as :data:`TAG`."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entry = {
        "mediaType": OCI_MANIFEST,
        "digest": manifest.digest,
        "size": len(manifest.raw),
        "annotations": {"org.opencontainers.image.ref.name": TAG},
    }
    index = {"schemaVersion": 2, "manifests": [entry]}
    (layout / "index.json").write_text(json.dumps(index))
