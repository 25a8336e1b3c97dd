"""Image references of the manifest: where a model version's runtime image comes from.

``oci-archive:FILE`` (a tar of an OCI layout, e.g. ``podman save --format oci-archive``),
``docker-archive:FILE`` (``docker save``), ``oci:DIR`` (an OCI layout folder) -- each a
relative path inside the model folder -- or ``docker://REF@sha256:DIGEST``, a registry
image pinned by digest (pulled once, at registration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

FILE_TRANSPORTS = ("oci-archive", "docker-archive", "oci")
REGISTRY_TRANSPORT = "docker"
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
# A registry reference: host[:port]/path[:tag]@sha256:hex, the characters of the OCI spec.
_REGISTRY_REF = re.compile(
    r"[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)+"
    r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?@sha256:[0-9a-f]{64}"
)
FORMS = "oci-archive:FILE, docker-archive:FILE, oci:DIR or docker://REF@sha256:DIGEST"


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: its transport and a model-folder path or registry name."""

    transport: str
    target: str

    @property
    def is_file(self) -> bool:
        """Whether it names a file or folder of the model folder (not a registry)."""
        return self.transport in FILE_TRANSPORTS

    def __str__(self) -> str:
        sep = "://" if self.transport == REGISTRY_TRANSPORT else ":"
        return f"{self.transport}{sep}{self.target}"


def parse_image_ref(text: str) -> ImageRef:
    """The reference ``text`` parsed; ValueError naming the accepted forms otherwise."""
    if text.startswith("docker://"):
        ref = text.removeprefix("docker://")
        if not _REGISTRY_REF.fullmatch(ref):
            raise ValueError(
                f"{text!r}: a registry image is pinned by its digest: "
                "docker://HOST/NAME@sha256:<64 hex digits>"
            )
        return ImageRef(REGISTRY_TRANSPORT, ref)
    transport, sep, path = text.partition(":")
    if not sep or transport not in FILE_TRANSPORTS:
        raise ValueError(f"{text!r}: an image is one of {FORMS}")
    if not path or "\\" in path or "\x00" in path or ":" in path:
        raise ValueError(f"{text!r}: give the path of the image inside the model folder")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or pure.parts in ((), (".",)):
        raise ValueError(f"{text!r}: the image path must be relative, inside the model folder")
    return ImageRef(transport, path)


def check_image_ref(text: str) -> str:
    """Pydantic validator: ``text`` when it parses (see :func:`parse_image_ref`)."""
    parse_image_ref(text)
    return text
