"""Images for ``simyard models test``: the model folder's images, checked and unpacked here.

The same steps as registration and a worker (skopeo copy, the layer checks, umoci unpack
into the sealed cache), without a store between them.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from simyard.errors import ManifestError, Problem
from simyard.images.cache import FetchLayout, ImageCache, UnpackedImage
from simyard.images.layout import ImageConfig, ImageManifest
from simyard.images.resolve import ImageProblem, ResolvedImage, resolve_image
from simyard.images.tools import ImageToolMissing
from simyard.manifest.checks import MANIFEST_FILE
from simyard.manifest.schema import Manifest

ON_FAILURE = "on_failure"


@contextlib.contextmanager
def local_images(
    manifest: Manifest,
    model_dir: Path,
    *,
    cache_root: Path,
    max_layer_bytes: int,
    max_cache_bytes: int,
) -> Iterator[dict[str, UnpackedImage]]:
    """Each task's unpacked image (``on_failure``'s too), held until the block ends.

    ManifestError naming the manifest key when an image cannot be used.
    """
    tasks = [*manifest.tasks, *([ON_FAILURE] if manifest.on_failure is not None else [])]
    cache = ImageCache(cache_root, max_cache_bytes)
    with contextlib.ExitStack() as held, tempfile.TemporaryDirectory() as tmp:
        unpacked: dict[str, UnpackedImage] = {}
        found: dict[str, UnpackedImage] = {}
        for task in tasks:
            text = manifest.image_of(task)
            if text is None:
                continue
            if text not in unpacked:
                where = "environment.image" if text == manifest.environment.image else task
                resolved = _resolve(
                    text, model_dir, Path(tmp) / str(len(unpacked)), where, max_layer_bytes
                )
                unpacked[text] = held.enter_context(cache.use(resolved.digest, _copier(resolved)))
            found[task] = unpacked[text]
        yield found


def _resolve(
    text: str, model_dir: Path, work: Path, where: str, max_layer_bytes: int
) -> ResolvedImage:
    if not where.startswith("environment"):
        where = f"tasks.{where}.image"
    try:
        return resolve_image(
            text, model_dir=model_dir, work=work, where=where, max_layer_bytes=max_layer_bytes
        )
    except ImageProblem as exc:
        raise ManifestError([Problem(exc.where, exc.message, MANIFEST_FILE)]) from None
    except ImageToolMissing as exc:
        raise ManifestError([Problem(where, str(exc), MANIFEST_FILE)]) from None


def _copier(resolved: ResolvedImage) -> FetchLayout:
    def fetch(layout: Path) -> tuple[ImageManifest, ImageConfig]:
        shutil.copytree(resolved.layout, layout)
        return resolved.manifest, resolved.config

    return fetch
