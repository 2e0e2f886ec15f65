"""The integration conftest skips, with the reason, when it cannot install an engine."""
from __future__ import annotations

import pytest

from . import conftest


def test_skips_with_apt_reason(tmp_path, monkeypatch):
    fake = tmp_path / "apt-get"
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package engine-xyz' >&2\nexit 100\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(conftest, "_apt_failure", {})
    with pytest.raises(pytest.skip.Exception, match="cannot install engine-xyz: apt-get failed: "
                                                     "E: Unable to locate package engine-xyz"):
        conftest.ensure_tools({"engine-xyz-binary": "engine-xyz"})


def test_images_are_well_formed(rootfs_tar, tmp_path):
    import json
    import tarfile
    with tarfile.open(rootfs_tar) as t:
        names = set(t.getnames())
    assert {"bin/busybox", "bin/sh", "etc/passwd", "run/marker", "var/tmp/marker"} <= names
    oci = conftest.build_oci_archive(rootfs_tar, tmp_path / "oci.tar")
    with tarfile.open(oci) as t:
        index = json.load(t.extractfile("index.json"))
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(t.extractfile(f"blobs/sha256/{digest}"))
        assert t.extractfile("oci-layout").read() == b'{"imageLayoutVersion":"1.0.0"}'
    assert manifest["layers"][0]["size"] == rootfs_tar.stat().st_size
