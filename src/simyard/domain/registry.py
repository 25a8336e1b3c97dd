"""The model registry: immutable model versions, stored as bundles named by content hash."""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from simyard.domain.tables import ModelVersion, User
from simyard.engine.bundles import make_bundle, stored_model_dir
from simyard.errors import SimyardError
from simyard.manifest import Manifest, load_manifest
from simyard.storage.base import Store


class ModelVersionConflict(SimyardError):
    """``(name, version)`` is registered already with other content."""


def register_model(
    *, db: Session, store: Store, model_dir: Path, user: User | None
) -> tuple[ModelVersion, bool]:
    """Validate and store a model folder; returns (version, created).

    The same content again is a no-op; the same version with other content is refused,
    since runs must stay reproducible.
    """
    manifest = load_manifest(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        bundle, content_hash = make_bundle(model_dir, Path(tmp))
        existing = db.scalar(
            select(ModelVersion).where(
                ModelVersion.name == manifest.name, ModelVersion.version == manifest.version
            )
        )
        if existing is not None:
            if existing.content_hash == content_hash:
                return existing, False
            raise ModelVersionConflict(
                f"{manifest.name} {manifest.version} is registered already with different "
                "content; give the changed model a new version"
            )
        key = f"bundles/{content_hash}.tar"
        if not store.exists(key):
            store.put(key, bundle)
        version = ModelVersion(
            name=manifest.name,
            version=manifest.version,
            content_hash=content_hash,
            manifest=manifest.model_dump(mode="json", exclude_unset=True),
            bundle_key=key,
            bundle_size=bundle.stat().st_size,
            created_by=user.id if user else None,
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


def model_dir_of(version: ModelVersion, *, store: Store, cache_root: Path) -> Path:
    """The unpacked model folder (cached by content hash, verified) for hooks and validation."""
    return stored_model_dir(
        store=store,
        bundle_key=version.bundle_key,
        content_hash=version.content_hash,
        cache_root=cache_root,
    )


def find_version(*, db: Session, name: str, version: str | None = None) -> ModelVersion | None:
    """A model version by name, the newest registered when ``version`` is None."""
    query = select(ModelVersion).where(ModelVersion.name == name)
    if version is not None:
        query = query.where(ModelVersion.version == version)
    return db.scalar(query.order_by(ModelVersion.id.desc()).limit(1))


def list_versions(*, db: Session) -> list[ModelVersion]:
    return list(db.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.id)))
