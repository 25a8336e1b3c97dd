"""Registering image models: digests, deduplicated blobs, immutability, and every refusal named."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from simyard.db.session import make_engine, session_factory, upgrade_schema
from simyard.domain.registry import ModelVersionConflict, register_model
from simyard.errors import ManifestError
from simyard.manifest import load_manifest
from simyard.storage.file import FileStore
from tests.conftest import MakeModel
from tests.unit.images.build import tiny_image

pytestmark = pytest.mark.skipif(
    not (shutil.which("umoci") and shutil.which("skopeo")), reason="needs umoci and skopeo"
)

MANIFEST = """
simyard: 1
name: {name}
version: "1"
tasks:
  main:
    command: [cat, /etc/marker]
environment:
  image: {image}
"""


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade_schema(engine)
    return session_factory(engine)


def image_model(make_model: MakeModel, name: str, **image: object) -> Path:
    model = make_model(MANIFEST.format(name=name, image="oci-archive:env/image.tar"))
    (model / "env").mkdir()
    tiny_image(model / "env" / "image.tar", programs=["/usr/bin/cat"], **image)  # type: ignore[arg-type]
    return model


def blobs(store_root: Path) -> set[str]:
    return {p.name for p in (store_root / "images" / "blobs" / "sha256").iterdir()}


def test_an_image_is_stored_by_digest_once_and_pinned_to_its_version(
    sessions: sessionmaker[Session], make_model: MakeModel, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "store")
    first = image_model(make_model, "first", files={"/etc/marker": "one\n"})
    with sessions() as db, db.begin():
        version, created = register_model(db=db, store=store, model_dir=first, user=None)
        digest = version.image_digest
    assert created
    assert digest is not None
    assert version.task_images == {"main": digest}
    stored = blobs(tmp_path / "store")
    assert digest.removeprefix("sha256:") in stored
    assert len(stored) == 3  # manifest, config, one layer
    with tarfile.open(tmp_path / "store" / version.bundle_key) as bundle:
        assert "env/image.tar" not in bundle.getnames()  # stored as blobs, not in the bundle

    # The same image under another config shares its layer: two blobs more, not three.
    second = make_model(MANIFEST.format(name="second", image="oci-archive:env/image.tar"))
    (second / "env").mkdir()
    shutil.copy(first / "env" / "image.tar", second / "env" / "image.tar")
    with sessions() as db, db.begin():
        again, _ = register_model(db=db, store=store, model_dir=second, user=None)
    assert again.image_digest == digest
    assert blobs(tmp_path / "store") == stored

    # The same (name, version) with another image is refused, whatever the bundle says.
    tiny_image(first / "env" / "image.tar", programs=["/usr/bin/cat"], env={"CHANGED": "1"})
    with sessions() as db, db.begin(), pytest.raises(ModelVersionConflict):
        register_model(db=db, store=store, model_dir=first, user=None)


def test_without_skopeo_an_image_model_is_refused_with_the_hint_and_others_register(
    sessions: sessionmaker[Session],
    make_model: MakeModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = image_model(make_model, "imaged")
    plain = make_model('simyard: 1\nname: plain\nversion: "1"\ntasks: {t: {command: ["true"]}}\n')
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    store = FileStore(tmp_path / "store")
    with sessions() as db, db.begin():
        with pytest.raises(ManifestError) as refused:
            register_model(db=db, store=store, model_dir=model, user=None)
        assert register_model(db=db, store=store, model_dir=plain, user=None)[1]
    problem = refused.value.problems[0]
    assert problem.field == "environment.image"
    assert "skopeo is not installed" in problem.message
    assert "apt-get install skopeo umoci" in problem.message


def test_an_unreachable_registry_is_refused_clearly(
    sessions: sessionmaker[Session], make_model: MakeModel, tmp_path: Path
) -> None:
    ref = "docker://127.0.0.1:9/simyard/none@sha256:" + "0" * 64  # the discard port: refused
    model = make_model(MANIFEST.format(name="pulled", image=ref))
    load_manifest(model)  # a well-formed reference: models check passes
    with sessions() as db, db.begin(), pytest.raises(ManifestError) as refused:
        register_model(db=db, store=FileStore(tmp_path / "store"), model_dir=model, user=None)
    problem = refused.value.problems[0]
    assert problem.field == "environment.image"
    assert problem.message.startswith(f"cannot pull the image {ref}: skopeo failed:")


def test_models_check_names_a_missing_image_and_a_bad_reference(make_model: MakeModel) -> None:
    missing = make_model(MANIFEST.format(name="missing", image="oci-archive:env/none.tar"))
    with pytest.raises(ManifestError) as refused:
        load_manifest(missing)
    assert [(p.field, p.message) for p in refused.value.problems] == [
        ("environment.image", "'env/none.tar' not found in the model folder")
    ]
    bad = make_model(MANIFEST.format(name="bad", image="podman:thing"))
    with pytest.raises(ManifestError) as refused:
        load_manifest(bad)
    [problem] = refused.value.problems
    assert problem.field == "environment.image"
    assert "'podman:thing': an image is one of oci-archive:FILE" in problem.message
