"""``medclip data download`` against a real HTTP server on 127.0.0.1 serving archives built here."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medclip_cli.data import load_dataset
from medclip_cli.data.archives import unpack
from medclip_cli.data.download import RECORD_NAME
from medclip_cli.data.home import default_data_root
from medclip_cli.errors import DataError

from .conftest import write_png


def medpix_zip(tmp_path: Path, caption: str = "an axial CT") -> bytes:
    """A tiny MedPix 2.0 repository archive, laid out like GitHub's (one top-level folder)."""
    records = [
        {"Type": "CT", "U_id": "MPX1", "image": "MPX1_a", "Description": {"Caption": caption, "Plane": "Axial"}},
        {
            "Type": "MR",
            "U_id": "MPX2",
            "image": "MPX2_b",
            "Description": {"Caption": "a brain MR", "Plane": "Sagittal"},
        },
    ]
    jsonl = "\n".join(json.dumps(r) for r in records) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        top = "MedPix-2.0-main/MedPix-2-0/"
        zf.writestr("MedPix-2.0-main/", "")
        zf.writestr("MedPix-2.0-main/README.md", "MedPix 2.0")
        zf.writestr(top + "Descriptions.json", json.dumps(records))
        zf.writestr(top + "splitted_dataset/descriptions_dev.jsonl", jsonl)
        for i, record in enumerate(records):
            png = write_png(tmp_path / f"src{i}.png", i, size=(300, 200))
            zf.writestr(top + f"images/{record['image']}.png", png.read_bytes())
    return buffer.getvalue()


class ArchiveServer:
    """Serves ``payload`` with ETag and byte ranges; ``cut_after`` bytes ends the next response early."""

    def __init__(self) -> None:
        self.payload = b""
        self.etag = '"v1"'
        self.cut_after: int | None = None
        self.ranges_supported = True
        self.requests: list[dict] = []
        self.bytes_sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(
                    {"path": self.path, "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")}
                )
                if self.path != "/medpix.zip":
                    self.send_error(404, "Not Found")
                    return
                start, total = 0, len(server.payload)
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if wanted and server.ranges_supported and (if_range is None or if_range == server.etag):
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(total - start))
                self.send_header("ETag", server.etag)
                self.end_headers()
                body = server.payload[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)
                server.bytes_sent += len(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/medpix.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = ArchiveServer()
    srv.payload = medpix_zip(tmp_path)
    monkeypatch.setenv("MEDCLIP_MEDPIX_URL", srv.url)
    yield srv
    srv.close()


def test_download_unpacks_and_becomes_the_default_data(cli, server, _isolated_home):
    result = cli("data", "download", "medpix2", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    root = _isolated_home / "datasets" / "medpix2"
    assert Path(info["root"]) == root == default_data_root()
    assert info["sha256"] == hashlib.sha256(server.payload).hexdigest() and info["bytes"] == len(server.payload)
    assert (root / "README.md").is_file() and not (root / "MedPix-2.0-main").exists()  # top folder dropped
    assert json.loads((root / RECORD_NAME).read_text())["sha256"] == info["sha256"]
    ds = load_dataset(default_data_root(), "dev")
    assert [s.caption for s in ds.samples] == ["an axial CT", "a brain MR"]
    assert cli("data", "check", "--json").exit_code == 0  # no path: the downloaded copy

    again = cli("data", "download", "medpix2")
    assert again.exit_code == 0 and "already downloaded" in again.output
    assert len(server.requests) == 1


def test_interrupted_download_resumes_with_a_range_request(cli, server, tmp_path):
    half = len(server.payload) // 2
    server.cut_after = half
    first = cli("data", "download", "medpix2", "--to", tmp_path / "mp")
    assert first.exit_code == 1
    output = " ".join(first.output.split())
    assert f"is truncated: {half:,} of {len(server.payload):,} bytes (run the same command again to resume)" in output
    assert not (tmp_path / "mp").exists()

    second = cli(
        "data", "download", "medpix2", "--to", tmp_path / "mp", "--sha256", hashlib.sha256(server.payload).hexdigest()
    )
    assert second.exit_code == 0, second.output
    assert server.requests[-1]["range"] == f"bytes={half}-" and server.requests[-1]["if_range"] == '"v1"'
    assert server.bytes_sent == len(server.payload)  # nothing fetched twice
    assert load_dataset(tmp_path / "mp", "dev").samples[0].caption == "an axial CT"


def test_changed_remote_file_is_fetched_whole_again(cli, server, tmp_path):
    server.cut_after = 100
    assert cli("data", "download", "medpix2", "--to", tmp_path / "mp").exit_code == 1
    server.payload, server.etag = medpix_zip(tmp_path, caption="a new caption"), '"v2"'
    result = cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sha256"] == hashlib.sha256(server.payload).hexdigest()
    assert load_dataset(tmp_path / "mp", "dev").samples[0].caption == "a new caption"


def test_force_downloads_again_and_replaces(cli, server, tmp_path):
    assert cli("data", "download", "medpix2", "--to", tmp_path / "mp").exit_code == 0
    server.payload, server.etag = medpix_zip(tmp_path, caption="second version"), '"v2"'
    assert cli("data", "download", "medpix2", "--to", tmp_path / "mp").exit_code == 0  # reused
    assert load_dataset(tmp_path / "mp", "dev").samples[0].caption == "an axial CT"
    assert cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--force").exit_code == 0
    assert load_dataset(tmp_path / "mp", "dev").samples[0].caption == "second version"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folders left


def test_archive_changed_on_disk_is_fetched_again(cli, server, tmp_path, _isolated_home):
    assert cli("data", "download", "medpix2", "--to", tmp_path / "a").exit_code == 0
    (archive,) = (_isolated_home / "downloads").glob("*.archive")
    archive.write_bytes(archive.read_bytes()[:-10] + b"0123456789")
    assert cli("data", "download", "medpix2", "--to", tmp_path / "b").exit_code == 0
    assert len(server.requests) == 2  # the damaged copy was not trusted
    assert load_dataset(tmp_path / "b", "dev").samples[0].caption == "an axial CT"


def test_server_without_ranges_restarts_from_the_start(cli, server, tmp_path):
    server.cut_after, server.ranges_supported = 500, False
    assert cli("data", "download", "medpix2", "--to", tmp_path / "mp").exit_code == 1
    assert cli("data", "download", "medpix2", "--to", tmp_path / "mp").exit_code == 0
    assert load_dataset(tmp_path / "mp", "dev").samples[1].caption == "a brain MR"


def test_checksum_mismatch_is_refused(cli, server, tmp_path, _isolated_home):
    result = cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--sha256", "0" * 64)
    assert result.exit_code == 1
    assert f"has sha256 {hashlib.sha256(server.payload).hexdigest()}, expected {'0' * 64}" in " ".join(
        result.output.split()
    )
    assert not (tmp_path / "mp").exists()
    assert list((_isolated_home / "downloads").glob("*.part")) == []


def test_existing_foreign_folder_is_not_replaced(cli, server, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = cli("data", "download", "medpix2", "--to", tmp_path / "mine")
    assert result.exit_code == 1 and "is not a medclip download" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_offline_or_unreachable_says_how_to_use_a_local_copy(cli, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MEDCLIP_MEDPIX_URL", f"http://127.0.0.1:{port}/medpix.zip")
    result = cli("data", "download", "medpix2")
    assert result.exit_code == 1
    assert f"cannot reach 127.0.0.1:{port}" in result.output and "--data" in result.output
    assert len(result.output.strip().splitlines()) == 1 or "error:" in result.output.splitlines()[0]

    monkeypatch.setenv("MEDCLIP_OFFLINE", "1")
    result = cli("data", "download", "medpix2")
    assert result.exit_code == 1 and "MEDCLIP_OFFLINE is set" in result.output


def test_archive_without_medpix_layout_is_refused(cli, server, tmp_path, _isolated_home):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("repo-main/README.md", "something else")
    server.payload = buffer.getvalue()
    result = cli("data", "download", "medpix2", "--to", tmp_path / "mp")
    assert result.exit_code == 1 and "holds no MedPix 2.0 layout; nothing was unpacked" in result.output
    assert not (tmp_path / "mp").exists()
    assert list((_isolated_home / "downloads").glob("*.archive")) == []  # fetched afresh next time


def test_http_error_is_one_line(cli, server, monkeypatch):
    monkeypatch.setenv("MEDCLIP_MEDPIX_URL", server.url.replace("medpix.zip", "nothing.zip"))
    result = cli("data", "download", "medpix2")
    assert result.exit_code == 1 and "HTTP 404" in result.output


# --- unpacking safely -------------------------------------------------------------------------


def _zip(path: Path, members: list[tuple[str, bytes]], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return path


def _tar(path: Path, build) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        build(tf)
    return path


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _zip(p / "a.zip", [("top/ok.txt", b"1"), ("top/../../evil.txt", b"2")]), "outside the target"),
        (lambda p: _zip(p / "a.zip", [("/abs/evil.txt", b"2")]), "outside the target"),
        (lambda p: _zip(p / "a.zip", [("top/ok.txt", b"1")], symlink="top/link"), "symbolic link"),
        (lambda p: _tar(p / "a.tgz", lambda tf: _add(tf, "top/../../evil.txt")), "outside the target"),
        (
            lambda p: _tar(p / "a.tgz", lambda tf: _add(tf, "top/link", kind=tarfile.SYMTYPE, link="/etc/passwd")),
            "is a link",
        ),
        (
            lambda p: _tar(
                p / "a.tgz", lambda tf: (_add(tf, "top/f"), _add(tf, "top/h", kind=tarfile.LNKTYPE, link="top/f"))
            ),
            "is a link",
        ),
        (lambda p: _tar(p / "a.tgz", lambda tf: _add(tf, "top/dev", kind=tarfile.CHRTYPE)), "not a file or folder"),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, make, message):
    work = tmp_path / "work"
    work.mkdir()
    archive = make(tmp_path)
    dest = work / "out"
    with pytest.raises(DataError, match=message):
        unpack(archive, dest)
    assert list(work.iterdir()) == []  # no target, no leftover temporary folder
    assert not (tmp_path / "evil.txt").exists() and not Path("/abs/evil.txt").exists()


def test_truncated_archive_is_refused(tmp_path, server):
    (tmp_path / "cut.zip").write_bytes(server.payload[: len(server.payload) - 40])
    with pytest.raises(DataError, match="not a readable zip or tar archive"):
        unpack(tmp_path / "cut.zip", tmp_path / "out", extra_files={})
    good = _tar(tmp_path / "ok.tgz", lambda tf: _add(tf, "repo-main/a/b.txt", b"hello"))
    (tmp_path / "cut.tgz").write_bytes(good.read_bytes()[:-30])
    with pytest.raises(DataError, match="truncated or corrupt|not a readable"):
        unpack(tmp_path / "cut.tgz", tmp_path / "out", extra_files={})
    unpack(good, tmp_path / "out", extra_files={"record.json": b"{}"})
    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"hello"
    assert (tmp_path / "out" / "record.json").read_bytes() == b"{}"
    assert not (tmp_path / "out").with_name("cut").exists()
