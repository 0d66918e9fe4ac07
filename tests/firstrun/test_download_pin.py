"""``data download medpix2`` takes a pinned commit whose unpacked files have a pinned sha256."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from medclip_cli.data import download
from medclip_cli.data.pins import MEDPIX_PIN, DataPin
from tests.data.test_download import ArchiveServer, medpix_zip


def _content_digest(payload: bytes) -> str:
    """The pinned digest computed straight from the zip's members (top folder dropped)."""
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        files = {i.filename.split("/", 1)[1]: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    lines = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


class LocalPin(DataPin):
    """The pinned release, served from 127.0.0.1 (every revision's archive URL is the test server's)."""

    url = ""

    def archive_url(self, revision: str | None = None) -> str:
        return self.url  # the server has one archive; the revision asked for is in the record


@pytest.fixture
def pinned(tmp_path, monkeypatch):
    srv = ArchiveServer()
    srv.payload = medpix_zip(tmp_path)
    pin = LocalPin("example/MedPix-2.0", "0123456789abcdef0123456789abcdef01234567", _content_digest(srv.payload))
    monkeypatch.setattr(LocalPin, "url", srv.url)
    monkeypatch.delenv(download.URL_ENV, raising=False)
    monkeypatch.setattr(download, "MEDPIX_PIN", pin)
    monkeypatch.setattr(download, "MEDPIX_URL", srv.url)
    yield srv
    srv.close()


def test_default_url_is_the_pinned_commit_not_main(monkeypatch):
    monkeypatch.delenv(download.URL_ENV, raising=False)
    url = download.medpix_url()
    assert url == f"https://codeload.github.com/CHILab1/MedPix-2.0/zip/{MEDPIX_PIN.commit}"
    assert len(MEDPIX_PIN.commit) == 40 and len(MEDPIX_PIN.content_sha256) == 64 and "main" not in url


def test_pinned_content_is_verified(cli, pinned, tmp_path):
    result = cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["verified"] is True and info["revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert info["content_sha256"] == _content_digest(pinned.payload)
    record = json.loads((tmp_path / "mp" / download.RECORD_NAME).read_text())
    assert record["content_sha256"] == info["content_sha256"] and record["verified"] is True


def test_changed_content_is_refused_and_nothing_is_unpacked(cli, pinned, tmp_path):
    pinned.payload = medpix_zip(tmp_path, caption="a different caption")
    result = cli("data", "download", "medpix2", "--to", tmp_path / "mp")
    assert result.exit_code == 1
    assert "not the pinned" in result.output and "nothing was unpacked" in " ".join(result.output.split())
    assert not (tmp_path / "mp").exists()


def test_a_newer_revision_only_when_asked_and_unverified(cli, pinned, tmp_path):
    assert cli("data", "download", "medpix2", "--to", tmp_path / "mp").exit_code == 0
    pinned.payload = medpix_zip(tmp_path, caption="newer caption")
    refused = cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--revision", "main")
    assert refused.exit_code == 1 and "holds MedPix 2.0 at 0123456789ab" in refused.output and "--force" in refused.output

    newer = cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--revision", "main", "--force")
    assert newer.exit_code == 0, newer.output
    assert "not the pinned release, content unverified" in " ".join(newer.output.split())
    record = json.loads((tmp_path / "mp" / download.RECORD_NAME).read_text())
    assert record["revision"] == "main" and record["verified"] is False
    assert record["content_sha256"] == _content_digest(pinned.payload)
