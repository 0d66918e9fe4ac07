"""``medclip data download openi`` against a real HTTP server on 127.0.0.1 serving the two archives."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medclip_cli.data import load_dataset
from medclip_cli.data.download import RECORD_NAME
from medclip_cli.data.openi_split import MANIFEST_NAME

from .openi_copy import write_openi

REPORTS, PNG = "NLMCXR_reports.tgz", "NLMCXR_png.tgz"


def openi_archives(tmp_path: Path, flat_png: bool = True) -> dict[str, bytes]:
    """The two archives as the collections page has them: reports under ecgen-radiology/, PNGs flat."""
    source = write_openi(tmp_path / "source")
    archives = {}
    for name, folder, prefix in ((REPORTS, "ecgen-radiology", "ecgen-radiology/"), (PNG, "NLMCXR_png", "" if flat_png else "NLMCXR_png/")):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
            for path in sorted((source / folder).iterdir()):
                tf.add(path, arcname=prefix + path.name)
        archives[name] = buffer.getvalue()
    return archives


class CollectionServer:
    """Serves files by name with ETags and byte ranges; ``cut`` = {name: n} ends one response after n bytes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404, "Not Found")
                    return
                payload, etag = server.files[name], '"' + hashlib.sha256(server.files[name]).hexdigest()[:8] + '"'
                start, wanted = 0, self.headers.get("Range")
                if wanted and self.headers.get("If-Range") in (None, etag):
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(payload) - start))
                self.send_header("ETag", etag)
                self.end_headers()
                body = payload[start:]
                if name in server.cut:
                    body = body[: server.cut.pop(name)]
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/imgs/collections/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = CollectionServer(openi_archives(tmp_path))
    monkeypatch.setenv("MEDCLIP_OPENI_URL", srv.url)
    yield srv
    srv.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_unpacks_both_archives_with_the_split_and_a_record(cli, server, _isolated_home):
    result = cli("data", "download", "openi", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    root = _isolated_home / "datasets" / "openi"
    assert Path(info["root"]) == root and info["reused"] is False
    assert {a["name"]: (a["sha256"], a["bytes"]) for a in info["archives"]} == {
        name: (_sha(data), len(data)) for name, data in server.files.items()
    }
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [".medclip-download.json", "NLMCXR_png", "ecgen-radiology", MANIFEST_NAME]
    )
    record = json.loads((root / RECORD_NAME).read_text())
    assert record["archives"]["png"]["sha256"] == _sha(server.files[PNG])
    assert json.loads((root / MANIFEST_NAME).read_text())["split"]["reports"]["dev"] == ["9.xml"]
    assert len(load_dataset(root, "all")) == 19
    check = cli("data", "check", root, "--json", "--encoder", "test-vit")
    assert check.exit_code == 0, check.output
    assert [s["split"] for s in json.loads(check.stdout)["splits"]] == ["train", "dev", "test"]

    again = cli("data", "download", "openi")
    assert again.exit_code == 0 and "already downloaded" in again.output
    assert len(server.requests) == 2  # nothing fetched the second time
    other = cli("data", "download", "openi", "--sha256", "reports=" + "1" * 64)
    assert other.exit_code == 1 and f"NLMCXR_reports.tgz had sha256 {_sha(server.files[REPORTS])}, not the expected" in (
        " ".join(other.output.split())
    )
    assert len(server.requests) == 2 and (root / RECORD_NAME).is_file()


def test_interrupted_image_archive_resumes_and_checksums_are_checked(cli, server, tmp_path):
    size = len(server.files[PNG])
    server.cut[PNG] = size // 2
    first = cli("data", "download", "openi", "--to", tmp_path / "oi")
    assert first.exit_code == 1 and not (tmp_path / "oi").exists()
    assert f"is truncated: {size // 2:,} of {size:,} bytes" in " ".join(first.output.split())

    sums = f"reports={_sha(server.files[REPORTS])},png={_sha(server.files[PNG])}"
    second = cli("data", "download", "openi", "--to", tmp_path / "oi", "--sha256", sums)
    assert second.exit_code == 0, second.output
    assert server.requests[-1] == (PNG, f"bytes={size // 2}-")  # resumed, the reports not fetched again
    assert [r for r in server.requests if r[0] == REPORTS] == [(REPORTS, None)]
    assert len(load_dataset(tmp_path / "oi", "train")) == 16


def test_wrong_checksum_is_refused_and_nothing_is_unpacked(cli, server, tmp_path):
    result = cli("data", "download", "openi", "--to", tmp_path / "oi", "--sha256", "png=" + "0" * 64)
    assert result.exit_code == 1
    assert f"has sha256 {_sha(server.files[PNG])}, expected {'0' * 64}" in " ".join(result.output.split())
    assert not (tmp_path / "oi").exists()


def test_bad_sha256_option_is_a_usage_error(cli, server, tmp_path):
    result = cli("data", "download", "openi", "--to", tmp_path / "oi", "--sha256", "abc")
    assert result.exit_code == 2 and "reports=HEX,png=HEX" in result.output
    assert server.requests == []


def test_changed_archives_with_force_replace_the_copy(cli, server, tmp_path):
    assert cli("data", "download", "openi", "--to", tmp_path / "oi").exit_code == 0
    (tmp_path / "oi" / MANIFEST_NAME).unlink()
    server.files = openi_archives(tmp_path / "v2", flat_png=False)  # the images in a top folder now
    reused = cli("data", "download", "openi", "--to", tmp_path / "oi")
    assert reused.exit_code == 0 and "already downloaded" in reused.output
    forced = cli("data", "download", "openi", "--to", tmp_path / "oi", "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "oi" / "NLMCXR_png" / "CXR1_1_IM-0001-3001.png").is_file()  # top folder dropped
    assert (tmp_path / "oi" / MANIFEST_NAME).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left


def test_archive_without_reports_is_refused(cli, server, tmp_path, _isolated_home):
    server.files[REPORTS] = server.files[PNG]  # PNGs where the XML should be
    result = cli("data", "download", "openi", "--to", tmp_path / "oi")
    assert result.exit_code == 1 and "holds no XML files (is it NLMCXR_reports.tgz?); nothing was unpacked" in result.output
    assert not (tmp_path / "oi").exists()


def test_existing_foreign_folder_is_kept(cli, server, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = cli("data", "download", "openi", "--to", tmp_path / "mine")
    assert result.exit_code == 1 and "is not a medclip download" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_offline_and_missing_files_are_one_line_about_openi(cli, server, monkeypatch):
    monkeypatch.setenv("MEDCLIP_OPENI_URL", server.url + "nothing/")
    server.files = {}
    result = cli("data", "download", "openi")
    assert result.exit_code == 1 and "HTTP 404" in result.output and "MEDCLIP_OPENI_URL" in result.output

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MEDCLIP_OPENI_URL", f"http://127.0.0.1:{port}/")
    result = cli("data", "download", "openi")
    assert result.exit_code == 1
    line = " ".join(result.output.split())
    assert f"cannot reach 127.0.0.1:{port}" in line and "local OpenI copy" in line and "MedPix" not in line

    monkeypatch.setenv("MEDCLIP_OFFLINE", "1")
    result = cli("data", "download", "openi")
    assert result.exit_code == 1 and "MEDCLIP_OFFLINE is set" in result.output and "MedPix" not in result.output
