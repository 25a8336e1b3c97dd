"""Dask TLS is built from simyard's settings; plain tcp only without certificates."""

from __future__ import annotations

from pathlib import Path

import pytest

from simyard.config import Settings
from simyard.errors import SimyardError
from simyard.wiring import dask_security


def test_no_certificates_means_no_security_object(tmp_path: Path) -> None:
    assert dask_security(Settings(home=tmp_path)) is None


def test_certificates_give_a_security_that_requires_encryption(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    security = dask_security(
        Settings(
            home=tmp_path,
            dask_tls_ca_file=files["ca"],
            dask_tls_cert_file=files["cert"],
            dask_tls_key_file=files["key"],
        )
    )
    assert security is not None
    assert security.require_encryption is True
    assert security.tls_ca_file == str(files["ca"])
    assert security.tls_client_cert == str(files["cert"])
    assert security.tls_client_key == str(files["key"])


def test_a_ca_without_a_client_certificate_is_a_clear_error(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(SimyardError, match="SIMYARD_DASK_TLS_CERT_FILE"):
        dask_security(Settings(home=tmp_path, dask_tls_ca_file=ca))
