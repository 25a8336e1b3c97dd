"""Image blobs in object storage, content-addressed: ``images/blobs/sha256/<hex>``.

A blob (manifest, config, layer) is stored once, whatever number of model versions share
it: two images built on the same base share its layers. Workers fetch by digest and check
every blob's sha256 before it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from simyard.images.layout import (
    BadLayout,
    ImageConfig,
    ImageManifest,
    blob_path,
    sha256_of,
    write_layout,
)
from simyard.images.reference import DIGEST_RE
from simyard.storage.base import Store

PREFIX = "images/blobs/sha256/"


def blob_key(digest: str) -> str:
    if not DIGEST_RE.fullmatch(digest):
        raise BadLayout(f"not a sha256 digest: {digest[:80]!r}")
    return PREFIX + digest.removeprefix("sha256:")


def store_image(store: Store, layout: Path, manifest: ImageManifest) -> int:
    """Store the manifest and every blob not stored yet; the bytes newly stored."""
    added = 0
    for digest in [*(d.digest for d in manifest.blobs), manifest.digest]:
        key = blob_key(digest)
        if not store.exists(key):
            source = blob_path(layout, digest)
            store.put(key, source)
            added += source.stat().st_size
    return added


def _fetch_blob(store: Store, digest: str, layout: Path) -> Path:
    """The blob in ``layout``, its sha256 checked; BadLayout when the stored bytes differ."""
    dest = blob_path(layout, digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    key = blob_key(digest)
    local = store.local_path(key)
    if local is not None:
        if sha256_of(local) != digest:
            raise BadLayout(f"stored blob {digest[:19]} does not match its digest")
        try:
            os.link(local, dest)
        except OSError:
            os.symlink(local, dest)
        return dest
    store.get(key, dest)
    if sha256_of(dest) != digest:
        raise BadLayout(f"stored blob {digest[:19]} does not match its digest")
    return dest


def fetch_layout(store: Store, digest: str, layout: Path) -> tuple[ImageManifest, ImageConfig]:
    """Make an OCI layout of the stored image ``digest`` in ``layout``, every blob verified."""
    manifest = ImageManifest.parse(digest, _fetch_blob(store, digest, layout).read_bytes())
    config = ImageConfig.parse(_fetch_blob(store, manifest.config.digest, layout).read_bytes())
    for layer in manifest.layers:
        _fetch_blob(store, layer.digest, layout)
    write_layout(layout, manifest)
    return manifest, config
