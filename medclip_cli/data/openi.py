"""The OpenI Indiana University chest X-ray collection as published (``ecgen-radiology/``, PNGs).

A folder holding ``ecgen-radiology/*.xml`` (from ``NLMCXR_reports.tgz``) and the images of
``NLMCXR_png.tgz`` as ``<parentImage id>.png`` in ``NLMCXR_png/``, ``images/`` or the folder
itself. Each image is one sample; its caption is its report's FINDINGS then IMPRESSION, and its
labels come from the report's major MeSH terms:

- ``normal``: ``normal`` when the major terms are exactly "normal", ``abnormal`` otherwise;
- ``finding``: the report's finding (a major term's part before ``/``) when it names exactly
  one, and that one is among the findings that are most often a report's only finding (how
  many: ``most_frequent`` in ``configs/labels/openi.toml``); images with none or several are
  left out.

Splits are by report (:mod:`medclip_cli.data.openi_split`), plus ``all``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from medclip_cli.data.dataset import Dataset, Sample
from medclip_cli.config_folders import builtin_config_dir, find_config
from medclip_cli.data.labels import LabelField, read_label_fields
from medclip_cli.data.openi_reports import Report, read_report
from medclip_cli.data.openi_split import (
    MANIFEST_NAME,
    SPLITS,
    Manifest,
    assign_splits,
    count_findings,
    read_manifest,
    report_order,
    write_manifest,
)
from medclip_cli.errors import DataError

REPORTS_DIR = "ecgen-radiology"
IMAGE_DIRS = ("NLMCXR_png", "images")  # else the images lie beside ecgen-radiology/
ALL_SPLIT = "all"
LABELS_FILE = "openi.toml"
DEFAULT_MOST_FREQUENT = 10


def find_root(path: Path) -> Path | None:
    """The folder holding ``ecgen-radiology/`` (``path`` itself, or its parent when ``path`` is
    the reports folder), or None."""
    if (path / REPORTS_DIR).is_dir():
        return path
    if path.name == REPORTS_DIR and path.is_dir():
        return path.parent
    return None


def detect(path: Path) -> bool:
    return path.is_dir() and find_root(path) is not None


def splits(path: Path) -> list[str]:
    _root(path)
    return [*SPLITS, ALL_SPLIT]


def images_dir(root: Path) -> Path:
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    return root


def _root(path: Path) -> Path:
    root = find_root(path)
    if root is None:
        raise DataError(
            f"{path}: not an OpenI folder (no {REPORTS_DIR}/ inside)",
            hint="point --data at the folder holding ecgen-radiology/, or run `medclip data download openi`",
        )
    return root


def report_files(root: Path) -> list[str]:
    folder = root / REPORTS_DIR
    return sorted((p.name for p in folder.glob("*.xml") if p.is_file()), key=report_order)


def manifest_for(root: Path) -> tuple[Manifest, dict[str, Report | str]]:
    """The data set's manifest (written on first use), and the reports read to build it, if any."""
    manifest = read_manifest(root)
    if manifest is not None:
        return manifest, {}
    files = report_files(root)
    if not files:
        raise DataError(f"{root / REPORTS_DIR}: holds no .xml report", hint="unpack NLMCXR_reports.tgz there")
    reports = {name: read_report(root / REPORTS_DIR / name) for name in files}
    heads = [r.finding_heads for r in reports.values() if isinstance(r, Report)]
    manifest = Manifest(assign_splits(files), count_findings(heads), count_findings(h for h in heads if len(h) == 1))
    return write_manifest(root, manifest), reports


def load(path: Path, split: str = "train") -> Dataset:
    root = _root(path)
    if split not in (*SPLITS, ALL_SPLIT):
        available = ", ".join([*SPLITS, ALL_SPLIT])
        raise DataError(f"{root}: has no split {split!r} (available: {available})", hint="choose another split")
    manifest, read = manifest_for(root)
    labels_toml = find_config("labels", Path(LABELS_FILE).stem) or builtin_config_dir() / "labels" / LABELS_FILE
    fields = read_label_fields(labels_toml)
    findings = manifest.most_frequent(_most_frequent(labels_toml))
    fields["finding"] = _finding_field(fields.get("finding") or LabelField("finding", (), {}), findings)
    on_disk = report_files(root)
    present = set(on_disk)
    problems = []
    if split in ("train", ALL_SPLIT):  # in no split: listed once (with train, the first checked)
        problems += [
            f"{REPORTS_DIR}/{name}: not in {MANIFEST_NAME}, so in no split; skipped "
            "(delete the manifest to split every report again)"
            for name in on_disk
            if name not in manifest.split_of
        ]
    wanted = [f for f in manifest.split_of if split == ALL_SPLIT or manifest.split_of[f] == split]
    problems += [f"{REPORTS_DIR}/{f}: listed in {MANIFEST_NAME} but missing; skipped" for f in wanted if f not in present]
    reader = _SampleReader(root, {f.casefold(): f for f in findings})
    for name in (f for f in wanted if f in present):
        reader.add(name, read.get(name) or read_report(root / REPORTS_DIR / name))
    return Dataset("openi", root, split, reader.samples, fields, problems + reader.problems)


class _SampleReader:
    """Turns reports into samples (one per image that exists), collecting one line per problem."""

    def __init__(self, root: Path, findings: dict[str, str]) -> None:
        self.root, self.images, self.findings = root, images_dir(root), findings  # casefold -> class
        self.samples: list[Sample] = []
        self.problems: list[str] = []
        self._seen: set[str] = set()

    def add(self, name: str, report: Report | str) -> None:
        where = f"{REPORTS_DIR}/{name}"
        if isinstance(report, str):
            self.problems.append(f"{where}: {report}; skipped")
            return
        self.problems += [f"{where}: image id {bad!r} is not a plain file name; skipped" for bad in report.bad_images]
        labels = {"report": report.uid}
        if report.normal is not None:
            labels["normal"] = report.normal
        heads = report.finding_heads
        if len(heads) == 1 and heads[0].casefold() in self.findings:
            labels["finding"] = self.findings[heads[0].casefold()]
        caption = report.caption
        for image_id in report.images:
            image = self.images / f"{image_id}.png"
            if image_id in self._seen:
                self.problems.append(f"{where}: image {image_id} is named by an earlier report too; skipped")
            elif not image.is_file():
                shown = _shown(image, self.root)
                self.problems.append(f"{where}: names image {image_id}, but {shown} does not exist; skipped")
            else:
                self._seen.add(image_id)
                self.samples.append(Sample(id=image_id, image=image, caption=caption, labels=dict(labels)))


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _most_frequent(labels_toml: Path) -> int:
    try:
        table = tomllib.loads(labels_toml.read_text(encoding="utf-8")).get("finding", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return DEFAULT_MOST_FREQUENT  # read_label_fields has reported a broken file already
    value = table.get("most_frequent", DEFAULT_MOST_FREQUENT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise DataError(f"{labels_toml}: finding.most_frequent must be a whole number of at least 2, not {value!r}")
    return value


def _finding_field(listed: LabelField, findings: list[str]) -> LabelField:
    """The ``finding`` field over the collection's most frequent findings, in that order, named
    for prompts by ``[finding.classes]`` (matched case-insensitively) or else in lower case."""
    readable = {k.casefold(): v for k, v in listed.readable.items()}
    return LabelField(
        name="finding",
        classes=tuple(findings),
        readable={f: readable.get(f.casefold(), f.lower()) for f in findings},
        aliases={},
        include_unlisted=False,
        description=listed.description,
    )
