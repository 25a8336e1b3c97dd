"""The worker's image cache: one unpacking for concurrent first uses, checked blobs, and
least-recently-used eviction that never takes an image in use."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from simyard.errors import EngineError
from simyard.images.cache import ImageCache
from simyard.images.layout import ImageConfig, ImageManifest
from simyard.images.resolve import resolve_image
from simyard.images.store import blob_key, fetch_layout, store_image
from simyard.storage.file import FileStore
from tests.unit.images.build import tiny_image

pytestmark = pytest.mark.skipif(
    not (shutil.which("umoci") and shutil.which("skopeo")), reason="needs umoci and skopeo"
)


def stored_image(tmp_path: Path, store: FileStore, marker: str) -> str:
    """A tiny image registered into ``store``; its digest."""
    model = tmp_path / f"model-{marker}"
    model.mkdir()
    tiny_image(model / "image.tar", programs=["/usr/bin/cat"], files={"/etc/marker": marker})
    resolved = resolve_image(
        "oci-archive:image.tar",
        model_dir=model,
        work=tmp_path / f"work-{marker}",
        where="environment.image",
        max_layer_bytes=2**30,
    )
    store_image(store, resolved.layout, resolved.manifest)
    return resolved.digest


def test_concurrent_first_uses_unpack_once_and_share_the_frozen_root(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    digest = stored_image(tmp_path, store, "one")
    cache = ImageCache(tmp_path / "cache", max_bytes=2**30)
    fetches = []
    barrier = threading.Barrier(4)

    def fetch(layout: Path) -> tuple[ImageManifest, ImageConfig]:
        fetches.append(layout)
        return fetch_layout(store, digest, layout)

    def use() -> Path:
        barrier.wait()
        with cache.use(digest, fetch) as image:
            assert (image.rootfs / "etc" / "marker").read_text() == "one"
            return image.rootfs

    with ThreadPoolExecutor(4) as pool:
        roots = set(pool.map(lambda _: use(), range(4)))
    assert len(fetches) == 1
    [root] = roots
    for path in (root, root / "etc", root / "etc" / "marker"):  # frozen: no write bit left
        assert path.stat().st_mode & 0o222 == 0


def test_a_tampered_blob_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    digest = stored_image(tmp_path, store, "one")
    layout_manifest = (tmp_path / "store" / blob_key(digest)).read_bytes()
    layer = ImageManifest.parse(digest, layout_manifest).layers[0]
    (tmp_path / "store" / blob_key(layer.digest)).write_bytes(b"planted")
    cache = ImageCache(tmp_path / "cache", max_bytes=2**30)
    with (
        pytest.raises(EngineError, match="does not match its digest"),
        cache.use(digest, lambda layout: fetch_layout(store, digest, layout)),
    ):
        pass
    assert cache.entries() == []


def test_least_recently_used_images_go_but_never_one_in_use(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    one, two, three = (stored_image(tmp_path, store, m) for m in ("one", "two", "three"))
    cache = ImageCache(tmp_path / "cache", max_bytes=1)  # every image is over it

    def use(digest: str) -> object:
        return cache.use(digest, lambda layout: fetch_layout(store, digest, layout))

    with use(one):
        with use(two):
            pass  # one is in use: it stays; two is the newest
        assert {"sha256:" + k for k, _s, _u in cache.entries()} == {one, two}
    with use(three):
        pass  # one and two are free now: both go; three (just made, in use) stays
    assert {"sha256:" + k for k, _s, _u in cache.entries()} == {three}
    with use(one) as image:
        assert (image.rootfs / "etc" / "marker").read_text() == "one"  # made again
