"""``medclip data download``: fetch a data-set archive resumably and verify it.

Only the standard library talks HTTP here (``urllib``), so downloads need no extra package.
Unpacking is :mod:`medclip_cli.data.archives`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from medclip_cli.atomic import write_text_atomic
from medclip_cli.data.archives import unpack
from medclip_cli.data.home import medclip_home, medpix_download_dir
from medclip_cli.data.pins import MEDPIX_PIN, content_sha256
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.errors import DataError
from medclip_cli.redact import redact

MEDPIX_URL = MEDPIX_PIN.archive_url()  # the pinned commit, never the moving main branch
URL_ENV = "MEDCLIP_MEDPIX_URL"
OFFLINE_ENV = "MEDCLIP_OFFLINE"
RECORD_NAME = ".medclip-download.json"  # in the unpacked folder: where it came from, its sha256
WRITER = "medclip data download"  # the record's "written_by": the marker that --force may replace the folder
_CHUNK = 1 << 20
_TIMEOUT_S = 30
_LOCAL_COPY_HINT = "download it on a connected machine, or pass --data PATH to a local MedPix 2.0 copy"


@dataclass(frozen=True)
class DownloadResult:
    """An unpacked data set and the archive it came from."""

    root: Path
    url: str
    sha256: str
    size: int
    reused: bool  # already downloaded: nothing fetched
    revision: str = MEDPIX_PIN.commit  # the commit (or the branch/tag asked for)
    content_sha256: str = ""  # of the unpacked files (see medclip_cli.data.pins)
    verified: bool = False  # the content matched the pinned release


def medpix_url(revision: str | None = None) -> str:
    """The pinned release's archive, another revision's when asked, or ``MEDCLIP_MEDPIX_URL`` (a mirror)."""
    if revision is None:
        return os.environ.get(URL_ENV, "").strip() or MEDPIX_URL
    return MEDPIX_PIN.archive_url(revision)


def download_medpix2(
    to: Path | None = None,
    *,
    expected_sha256: str | None = None,
    force: bool = False,
    revision: str | None = None,
    progress: ProgressReporter | None = None,
) -> DownloadResult:
    """Download and unpack MedPix 2.0 into ``to`` (default: ``MEDCLIP_HOME/datasets/medpix2``).

    By default the pinned release (:data:`~medclip_cli.data.pins.MEDPIX_PIN`): its unpacked files
    must have the pinned sha256, or nothing is unpacked. ``revision`` (``main``, a tag or another
    commit) takes that one instead, unverified; its content sha256 is reported so it can be pinned.
    """
    from medclip_cli.data import medpix2

    dest = Path(to) if to is not None else medpix_download_dir()
    if dest.exists() and not dest.is_dir():
        raise DataError(f"--to {dest}: exists and is not a folder", hint="choose another --to")
    url = medpix_url(revision)
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):  # never file://, ftp://, data:
        raise DataError(f"{URL_ENV}={redact(url)}: only http:// and https:// URLs are downloaded", hint=f"unset {URL_ENV}")
    pinned = revision in (None, MEDPIX_PIN.commit) and url == MEDPIX_URL
    wanted = revision or (MEDPIX_PIN.commit if url == MEDPIX_URL else redact(url))
    record = _read_record(dest)
    if (
        record is not None
        and not force
        and medpix2.detect(dest)
        and _matches(record.get("sha256", ""), expected_sha256)
        and record.get("revision", record.get("url")) == wanted
    ):
        return DownloadResult(
            dest, redact(str(record.get("url", url))), str(record.get("sha256", "")), _size(record), True,
            wanted, str(record.get("content_sha256", "")), bool(record.get("verified")),
        )  # fmt: skip
    if dest.exists() and any(dest.iterdir()):
        if record is None:  # never delete what medclip did not write, --force or not
            raise DataError(
                f"{dest}: exists and is not a medclip download (no {RECORD_NAME}); not replaced, even with --force",
                hint="choose another --to, or move its content away yourself",
            )
        if not force and medpix2.detect(dest):
            have = redact(str(record.get("revision", record.get("url", "an earlier revision"))))
            raise DataError(
                f"{dest}: holds MedPix 2.0 at {have}, not {wanted}", hint="pass --force to replace it, or choose another --to"
            )
        if not force:
            raise DataError(
                f"{dest}: holds an earlier medclip download that does not match",
                hint="pass --force to replace it, or choose another --to",
            )
    progress = progress or NullProgress()
    archive, digest, size = fetch(
        url, medclip_home() / "downloads", expected_sha256=expected_sha256, refetch=force, progress=progress
    )
    content: dict[str, str] = {}

    def accept(folder: Path) -> bool:
        if not medpix2.detect(folder):
            return False
        content["sha256"] = content_sha256(folder)
        if pinned and content["sha256"] != MEDPIX_PIN.content_sha256:
            raise DataError(
                f"{redact(url)}: unpacked files have sha256 {content['sha256']}, not the pinned "
                f"{MEDPIX_PIN.content_sha256} of commit {MEDPIX_PIN.commit[:12]}; nothing was unpacked",
                hint="run again to fetch it afresh; --revision main takes the newest revision unverified",
            )
        return True

    record = {
        "written_by": WRITER, "url": redact(url), "sha256": digest, "size": size, "downloaded": _now(),
        "revision": wanted, "verified": pinned,
    }  # fmt: skip
    try:
        unpack(
            archive,
            dest,
            extra_files={RECORD_NAME: lambda: json.dumps({**record, "content_sha256": content["sha256"]}, indent=2).encode()},
            accept=accept,
            what="MedPix 2.0 layout",
            progress=progress,
        )
    except DataError:
        forget(archive)  # the next run fetches it afresh instead of failing on the same file
        raise
    return DownloadResult(dest, redact(url), digest, size, False, wanted, content["sha256"], pinned)


# --- fetching ---------------------------------------------------------------------------------


def fetch(
    url: str,
    folder: Path,
    *,
    expected_sha256: str | None = None,
    refetch: bool = False,
    progress: ProgressReporter | None = None,
) -> tuple[Path, str, int]:
    """Download ``url`` into ``folder`` (resuming a partial download); returns (file, sha256, bytes).

    A complete earlier download is reused when its bytes still have the recorded sha256, unless
    ``refetch``.
    """
    progress = progress or NullProgress()
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    final, part, state_path = folder / f"{name}.archive", folder / f"{name}.part", folder / f"{name}.json"
    if refetch:
        forget(final)
    state = _read_json(state_path) or {}
    if final.is_file() and state.get("complete"):
        digest = file_digest(final)
        if digest == state.get("sha256") and _matches(digest, expected_sha256):
            return final, digest, final.stat().st_size
        final.unlink()  # changed on disk since it was verified: fetch it again
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        raise DataError(f"{OFFLINE_ENV} is set, so {_host(url)} is not contacted", hint=_LOCAL_COPY_HINT)
    resumable = part.is_file() and state.get("url_sha256") == _url_digest(url)
    validator = state.get("validator") if resumable else None
    have = part.stat().st_size if resumable else 0
    response, have = _open(url, have, validator)
    with response:
        total = _total_size(response, have)
        _write_json(state_path, {**_url_fields(url), "validator": _validator(response), "total": total})
        received = _stream(response, part, have, total, url, progress)
    if total is not None and received != total:
        raise DataError(
            f"download of {redact(url)} is truncated: {received:,} of {total:,} bytes",
            hint="run the same command again to resume",
        )
    digest = file_digest(part)
    if not _matches(digest, expected_sha256):
        part.unlink()
        state_path.unlink(missing_ok=True)
        raise DataError(
            f"download of {redact(url)} has sha256 {digest}, expected {expected_sha256}",
            hint="the file was deleted; check the expected checksum or the URL, then retry",
        )
    os.replace(part, final)
    _write_json(state_path, {**_url_fields(url), "sha256": digest, "size": received, "complete": True})
    return final, digest, received


def _stream(response, part: Path, have: int, total: int | None, url: str, progress: ProgressReporter) -> int:
    """Append the response body to ``part`` (which holds ``have`` bytes); returns its new size."""
    task = progress.task(f"downloading {_host(url)} archive (kB)", total=None if total is None else _kb(total))
    progress.advance(task, _kb(have))
    received = have
    with open(part, "ab" if have else "wb") as out:
        try:
            for chunk in _chunks(response):
                out.write(chunk)
                progress.advance(task, _kb(received + len(chunk)) - _kb(received))
                received += len(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(
                f"download of {redact(url)} stopped after {received:,} bytes ({type(exc).__name__}: {exc})",
                hint="run the same command again to resume",
            ) from exc
    progress.done(task)
    return received


def forget(archive: Path) -> None:
    """Delete a downloaded archive and its state file."""
    archive.unlink(missing_ok=True)
    archive.with_suffix(".json").unlink(missing_ok=True)


def _open(url: str, have: int, validator: str | None):
    headers = {"User-Agent": "medclip"}
    if have:
        # If-Range: the server sends the whole file again when it changed since the first part.
        headers["Range"] = f"bytes={have}-"
        if validator:
            headers["If-Range"] = validator
    try:
        response = urllib.request.urlopen(_request(url, headers), timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is no prefix of the current one: restart
            return _open(url, 0, None)
        raise DataError(f"{redact(url)}: HTTP {exc.code} {exc.reason}", hint=f"check the URL ({URL_ENV} overrides it)") from exc
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot reach {_host(url)} to download ({reason})", hint=_LOCAL_COPY_HINT) from exc
    if have and response.status == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == have:
            return response, have
        response.close()
        return _open(url, 0, None)
    return response, 0  # a 200 answer is the whole file: start again from its first byte


def _request(url: str, headers: dict) -> urllib.request.Request:
    """A request for ``url``; its ``user:password@`` becomes a Basic Authorization header that is
    never sent on to a host the server redirects to (and never appears in the URL medclip shows)."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return urllib.request.Request(url, headers=headers)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=host)), headers=headers)
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def _total_size(response, have: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    match = re.search(r"/(\d+)\s*$", content_range)
    if match:
        return int(match.group(1))
    length = response.headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def _kb(n: int) -> int:
    return -(-n // 1024)


def _validator(response) -> str | None:
    return response.headers.get("ETag") or response.headers.get("Last-Modified")


def _chunks(response) -> Iterator[bytes]:
    while chunk := response.read(_CHUNK):
        yield chunk


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(digest: str, expected: str | None) -> bool:
    return expected is None or digest.lower() == expected.strip().lower()


def _host(url: str) -> str:
    """The host (and port) of ``url``, never its ``user:password@``."""
    from urllib.parse import urlsplit

    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[2] or redact(url)


def _url_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _url_fields(url: str) -> dict:
    """How a URL is recorded on disk: redacted for people, a digest to recognise it again."""
    return {"url": redact(url), "url_sha256": _url_digest(url)}


def _size(record: dict) -> int:
    try:
        return int(record.get("size", 0))
    except (TypeError, ValueError):
        return 0


def _read_record(dest: Path) -> dict | None:
    """The record of an earlier ``medclip data download`` into ``dest`` (a regular file with a sha256)."""
    path = dest / RECORD_NAME
    if path.is_symlink() or not path.is_file():
        return None
    record = _read_json(path)
    return record if record is not None and isinstance(record.get("sha256"), str) else None


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
