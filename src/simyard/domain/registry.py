"""The model registry: immutable model versions, stored as bundles named by content hash."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from simyard.domain.tables import ModelVersion, Run, User
from simyard.engine.bundles import make_bundle, stored_model_dir
from simyard.errors import ManifestError, Problem, SimyardError
from simyard.images.reference import parse_image_ref
from simyard.images.resolve import ImageProblem, ResolvedImage, resolve_image
from simyard.images.store import store_image
from simyard.images.tools import ImageToolMissing
from simyard.manifest import Manifest, load_manifest
from simyard.manifest.checks import MANIFEST_FILE
from simyard.storage.base import Store


class ModelVersionConflict(SimyardError):
    """``(name, version)`` is registered already with other content."""


DEFAULT_MAX_IMAGE_LAYER = 4 * 2**30


def image_keys(manifest: Manifest) -> dict[str, str]:
    """The manifest's image references by the key naming each (``environment.image``, ...)."""
    found = {}
    if manifest.environment.image is not None:
        found["environment.image"] = manifest.environment.image
    for name, task in manifest.tasks.items():
        if task.image is not None:
            found[f"tasks.{name}.image"] = task.image
    return found


def _resolve_images(
    manifest: Manifest, model_dir: Path, work: Path, max_layer_bytes: int
) -> dict[str, ResolvedImage]:
    """Each distinct image of the manifest, copied and checked; ManifestError naming the key."""
    resolved: dict[str, ResolvedImage] = {}
    for where, text in image_keys(manifest).items():
        if text in resolved:
            continue
        try:
            resolved[text] = resolve_image(
                text,
                model_dir=model_dir,
                work=work / f"image{len(resolved)}",
                where=where,
                max_layer_bytes=max_layer_bytes,
            )
        except ImageProblem as exc:
            raise ManifestError([Problem(exc.where, exc.message, MANIFEST_FILE)]) from None
        except ImageToolMissing as exc:
            message = f"this server cannot register image models: {exc}"
            raise ManifestError([Problem(where, message, MANIFEST_FILE)]) from None
    return resolved


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _without_images(manifest: Manifest, model_dir: Path, dest: Path) -> Path:
    """The model folder without its image files (stored as blobs, not in the bundle)."""
    skipped = {
        (model_dir / ref.target).resolve()
        for ref in map(parse_image_ref, image_keys(manifest).values())
        if ref.is_file
    }
    if not skipped:
        return model_dir

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if (Path(folder) / n).resolve() in skipped}

    shutil.copytree(model_dir, dest, symlinks=True, ignore=ignore, copy_function=_link_or_copy)
    return dest


def register_model(
    *,
    db: Session,
    store: Store,
    model_dir: Path,
    user: User | None,
    max_image_layer_bytes: int = DEFAULT_MAX_IMAGE_LAYER,
) -> tuple[ModelVersion, bool]:
    """Validate and store a model folder; returns (version, created).

    The same content again is a no-op; the same version with other content is refused,
    since runs must stay reproducible. A model with an image (``environment.image``, a
    task's ``image``) has each image resolved, checked and stored by digest; its image
    files are not part of the bundle, and a changed image is changed content too.
    """
    manifest = load_manifest(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = _resolve_images(manifest, model_dir, work, max_image_layer_bytes)
        source = _without_images(manifest, model_dir, work / "model")
        bundle, content_hash = make_bundle(source, work / "bundle")
        default = manifest.environment.image
        image_digest = images[default].digest if default is not None else None
        task_images = {
            name: images[text].digest
            for name in manifest.tasks
            if (text := manifest.image_of(name)) is not None
        }
        # Stored before the database is asked (which begins its transaction): on SQLite
        # that holds the one write lock, and a large bundle or image would hold every
        # other writer up meanwhile. The store is content-addressed: what a refused
        # registration stored is the same blob a later one of that content finds.
        key = f"bundles/{content_hash}.tar"
        if not store.exists(key):
            store.put(key, bundle)
        for image in images.values():
            store_image(store, image.layout, image.manifest)
        existing = db.scalar(
            select(ModelVersion).where(
                ModelVersion.name == manifest.name, ModelVersion.version == manifest.version
            )
        )
        if existing is not None:
            same_images = (
                existing.image_digest == image_digest
                and (existing.task_images or {}) == task_images
            )
            if existing.content_hash == content_hash and same_images:
                return existing, False
            raise ModelVersionConflict(
                f"{manifest.name} {manifest.version} is registered already with different "
                "content; give the changed model a new version"
            )
        version = ModelVersion(
            name=manifest.name,
            version=manifest.version,
            content_hash=content_hash,
            manifest=manifest.model_dump(mode="json", exclude_unset=True),
            bundle_key=key,
            bundle_size=bundle.stat().st_size,
            created_by=user.id if user else None,
            image_digest=image_digest,
            task_images=task_images or None,
        )
    db.add(version)
    db.flush()
    return version, True


MANIFESTS_KEPT = 256  # parsed manifests kept per process (one per model version in use)
_parsed: OrderedDict[str, tuple[dict[str, Any], Manifest]] = OrderedDict()
_parsed_lock = threading.Lock()


def manifest_of(version: ModelVersion) -> Manifest:
    """The parsed manifest of a registered version, validated once per process: kept by
    the bundle's content hash (the manifest is part of the bundle), least recently used
    dropped first. Shared between callers, so never changed by one."""
    key = version.content_hash
    with _parsed_lock:
        kept = _parsed.get(key)
        if kept is not None and kept[0] == version.manifest:
            _parsed.move_to_end(key)
            return kept[1]
    manifest = Manifest.model_validate(version.manifest)
    with _parsed_lock:
        _parsed[key] = (version.manifest, manifest)
        _parsed.move_to_end(key)
        while len(_parsed) > MANIFESTS_KEPT:
            _parsed.popitem(last=False)
    return manifest


def version_of(db: Session, run: Run) -> ModelVersion:
    """``run``'s model version, loaded at most once per session: the session holds it
    (its identity map alone keeps objects weakly, so each lazy load of another run's
    ``model_version`` could read the row again)."""
    version = _held(db).get(run.model_version_id)
    return version if version is not None else hold_version(db, run.model_version)


def hold_version(db: Session, version: ModelVersion) -> ModelVersion:
    """Keep ``version`` (just read) for :func:`version_of` for the session's life."""
    _held(db)[version.id] = version
    return version


def _held(db: Session) -> dict[int, ModelVersion]:
    held: dict[int, ModelVersion] = db.info.setdefault("model_versions", {})
    return held


def model_dir_of(version: ModelVersion, *, store: Store, cache_root: Path) -> Path:
    """The unpacked model folder (cached by content hash, verified) for hooks and validation."""
    return stored_model_dir(
        store=store,
        bundle_key=version.bundle_key,
        content_hash=version.content_hash,
        cache_root=cache_root,
    )


def image_digest_of(version: ModelVersion, task: str) -> str | None:
    """The digest of the image ``task`` of ``version`` runs in (``on_failure``: the default)."""
    return (version.task_images or {}).get(task) or version.image_digest


def find_version(*, db: Session, name: str, version: str | None = None) -> ModelVersion | None:
    """A model version by name, the newest registered when ``version`` is None."""
    query = select(ModelVersion).where(ModelVersion.name == name)
    if version is not None:
        query = query.where(ModelVersion.version == version)
    return db.scalar(query.order_by(ModelVersion.id.desc()).limit(1))


def list_versions(*, db: Session) -> list[ModelVersion]:
    return list(db.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.id)))
