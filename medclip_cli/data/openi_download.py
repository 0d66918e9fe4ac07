"""``medclip data download openi``: the two NLM Open-i archives, fetched resumably and verified.

The Indiana University chest X-ray collection is published on the Open-i collections page as
``NLMCXR_reports.tgz`` (``ecgen-radiology/<n>.xml``) and ``NLMCXR_png.tgz`` (``<id>.png``).
Both are fetched with :func:`medclip_cli.data.download.fetch` (resume with ``Range``/``If-Range``,
sha256 of every archive, a damaged cached archive fetched again) and unpacked with
:func:`medclip_cli.data.archives.unpack` (unsafe members refused) into one folder that replaces
the target only when everything is there::

    <to>/ecgen-radiology/*.xml
    <to>/NLMCXR_png/*.png
    <to>/medclip-openi.json        the split by report and the finding counts (openi_split)
    <to>/.medclip-download.json    each archive's URL, size and sha256
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from medclip_cli.atomic import replace_dir
from medclip_cli.data.archives import unpack
from medclip_cli.data.download import RECORD_NAME, fetch, forget
from medclip_cli.data.home import medclip_home, openi_download_dir
from medclip_cli.errors import DataError, UsageError
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.redact import redact

OPENI_URL = "https://openi.nlm.nih.gov/imgs/collections/"
URL_ENV = "MEDCLIP_OPENI_URL"  # the folder (URL ending in /) that holds both archives: a mirror
#: Archive key -> (file name on the collections page, folder it is unpacked into).
ARCHIVES = {
    "reports": ("NLMCXR_reports.tgz", "ecgen-radiology"),
    "png": ("NLMCXR_png.tgz", "NLMCXR_png"),
}
_LOCAL_COPY_HINT = "download them on a connected machine, or pass --data PATH to a local OpenI copy"


@dataclass(frozen=True)
class ArchiveInfo:
    name: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class OpenIDownload:
    """An unpacked OpenI copy and the archives it came from."""

    root: Path
    archives: tuple[ArchiveInfo, ...]
    reused: bool  # already downloaded: nothing fetched

    @property
    def size(self) -> int:
        return sum(a.size for a in self.archives)


def archive_urls() -> dict[str, str]:
    base = os.environ.get(URL_ENV, "").strip() or OPENI_URL
    base = base if base.endswith("/") else base + "/"
    return {key: base + name for key, (name, _) in ARCHIVES.items()}


def parse_checksums(text: str | None) -> dict[str, str]:
    """``--sha256`` for OpenI: ``reports=HEX,png=HEX`` (either or both)."""
    if not text:
        return {}
    expected = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if not sep or key not in ARCHIVES or not re.fullmatch(r"[0-9a-f]{64}", value):
            raise UsageError(
                f"--sha256 {text!r}: expected reports=HEX,png=HEX (64 hex digits each) for the two OpenI archives"
            )
        expected[key] = value
    return expected


def download_openi(
    to: Path | None = None,
    *,
    expected_sha256: dict[str, str] | None = None,
    force: bool = False,
    progress: ProgressReporter | None = None,
) -> OpenIDownload:
    """Download and unpack the OpenI chest X-ray collection into ``to``."""
    from medclip_cli.data import openi

    expected = expected_sha256 or {}
    dest = Path(to) if to is not None else openi_download_dir()
    if dest.exists() and not dest.is_dir():
        raise DataError(f"--to {dest}: exists and is not a folder", hint="choose another --to")
    urls = archive_urls()
    if urllib.parse.urlsplit(urls["reports"]).scheme.lower() not in ("http", "https"):  # never file://, ftp://
        raise DataError(f"{URL_ENV}={redact(urls['reports'])}: only http:// and https:// URLs are downloaded", hint=f"unset {URL_ENV}")
    record = _read_record(dest)
    if record is not None and not force and openi.detect(dest):
        kept = _archives_of(record)
        if set(kept) == set(ARCHIVES):
            for key, digest in expected.items():
                if kept[key].sha256 != digest:
                    raise DataError(
                        f"{dest}: its {kept[key].name} had sha256 {kept[key].sha256}, not the expected {digest}",
                        hint="pass --force to download again, or check the expected checksum",
                    )
            return OpenIDownload(dest, tuple(kept[k] for k in ARCHIVES), True)
    if dest.exists() and any(dest.iterdir()):
        if record is None:  # never delete what medclip did not write, --force or not
            raise DataError(
                f"{dest}: exists and is not a medclip download (no {RECORD_NAME}); not replaced, even with --force",
                hint="choose another --to, or move its content away yourself",
            )
        if not force:
            raise DataError(
                f"{dest}: holds an earlier medclip download that does not match",
                hint="pass --force to replace it, or choose another --to",
            )
    progress = progress or NullProgress()
    fetched: dict[str, tuple[Path, ArchiveInfo]] = {}
    for key in ARCHIVES:
        try:
            path, digest, size = fetch(
                urls[key], medclip_home() / "downloads", expected_sha256=expected.get(key), refetch=force, progress=progress
            )
        except DataError as exc:
            raise _for_openi(exc) from exc
        fetched[key] = (path, ArchiveInfo(ARCHIVES[key][0], redact(urls[key]), digest, size))
    infos = tuple(info for _, info in fetched.values())
    _unpack_all(dest, {k: path for k, (path, _) in fetched.items()}, infos, progress)
    return OpenIDownload(dest, infos, False)


def _unpack_all(dest: Path, archives: dict[str, Path], infos: tuple[ArchiveInfo, ...], progress) -> None:
    from medclip_cli.data import openi

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        for key, archive in archives.items():
            name, folder = ARCHIVES[key]
            suffix = ".xml" if key == "reports" else ".png"
            try:
                unpack(
                    archive,
                    staging / folder,
                    accept=lambda p, suffix=suffix: any(p.glob(f"*{suffix}")),
                    what=f"{suffix[1:].upper()} files (is it {name}?)",
                    progress=progress,
                )
            except DataError:
                forget(archive)  # the next run fetches it afresh instead of failing on the same file
                raise
        openi.manifest_for(staging)  # the split is fixed now, once, with the data
        record = {
            "archives": {key: info.__dict__ for key, info in zip(ARCHIVES, infos)},
            "downloaded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / RECORD_NAME).write_text(json.dumps(record, indent=2), encoding="utf-8")
        replace_dir(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_record(dest: Path) -> dict | None:
    try:
        data = json.loads((dest / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _archives_of(record: dict) -> dict[str, ArchiveInfo]:
    found = {}
    for key, info in (record.get("archives") or {}).items() if isinstance(record.get("archives"), dict) else ():
        try:
            found[key] = ArchiveInfo(str(info["name"]), str(info["url"]), str(info["sha256"]), int(info["size"]))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _for_openi(exc: DataError) -> DataError:
    """The fetcher's error with a hint that speaks of OpenI (it was written for MedPix)."""
    hint = exc.hint
    if hint and "overrides" in hint:
        hint = f"check the URL ({URL_ENV} overrides the folder both archives are in)"
    elif hint and "MedPix" in hint:
        hint = _LOCAL_COPY_HINT
    return DataError(exc.message, hint=hint)
