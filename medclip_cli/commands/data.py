"""``medclip data``: check and download data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui

app = typer.Typer(help="Check and download data sets.", no_args_is_help=True)

_DATASETS = ("medpix2", "openi")


@app.command("check")
def check(
    ctx: typer.Context,
    path: Annotated[
        Optional[Path],
        typer.Argument(help="Data set folder or manifest (default: the downloaded MedPix 2.0).", show_default=False),
    ] = None,
    dataset: options.DatasetKind = None,
    split: Annotated[
        Optional[List[str]],
        typer.Option("--split", "-s", help="Split to check (repeat; default: all).", show_default=False),
    ] = None,
    encoder: Annotated[
        Optional[str],
        typer.Option(
            "--encoder", "-e", help="Count captions its text tower truncates (default: clip-text).", show_default=False
        ),
    ] = None,
    image_column: options.ImageColumn = None,
    caption_column: options.CaptionColumn = None,
    label_columns: options.LabelColumns = None,
    split_column: options.SplitColumn = None,
    labels_file: Annotated[
        Optional[Path],
        typer.Option("--labels-file", help="TOML of readable class names (configs/labels format).", show_default=False),
    ] = None,
    as_json: options.Json = False,
) -> None:
    """Check a data set: images, captions, classes per label, and problems, split by split.

    Every image is decoded. Missing or corrupt images and skipped manifest rows are errors (exit code 1); duplicate images and long or empty captions are reported.

    Examples:

        medclip data check ../shared/medpix2

        medclip data check pairs.csv --caption-column report --label-column modality --encoder minilm-l6

        medclip data check scans/ --dataset folder --split train --json
    """
    from medclip_cli.data import list_splits, load_dataset
    from medclip_cli.data.check import check_dataset
    from medclip_cli.encoders import DEFAULT_TEXT_ENCODER
    from medclip_cli.models.tokens import caption_token_counter
    from medclip_cli.data.home import default_data_root

    options.spell_flags(ctx)
    root = path if path is not None else default_data_root()
    data_options = {
        **options.column_options(image_column, caption_column, label_columns, split_column),
        "labels_file": labels_file,
    }
    splits = split or [
        s for s in list_splits(root, dataset, **data_options) if s != "all" or _only_split(root, dataset, data_options)
    ]
    datasets = [load_dataset(root, s, dataset, **data_options) for s in splits]
    count_tokens, context, text_encoder = caption_token_counter(encoder or DEFAULT_TEXT_ENCODER)
    with ui.progress(enabled=not as_json) as reporter:
        report = check_dataset(
            datasets, count_tokens=count_tokens, context_length=context, text_encoder=text_encoder, progress=reporter
        )
    if as_json:
        ui.print_json(report.as_dict())
    else:
        _show(report)
    if report.errors:
        raise typer.Exit(1)


def _only_split(root: Path, dataset: str | None, data_options: dict) -> bool:
    # "all" is checked when it is the only split (a manifest without a split column), not as a
    # repeat of train + dev for MedPix.
    from medclip_cli.data import list_splits

    return list_splits(root, dataset, **data_options) == ["all"]


_MAX_CLASSES_SHOWN = 8


def _show(report) -> None:
    tokens = f">{report.context_length} tokens"
    columns = [
        "split",
        "images",
        "readable",
        "captions",
        "empty",
        tokens,
        "missing",
        "corrupt",
        "duplicates",
        "skipped rows",
    ]
    rows = [
        (
            s.split,
            s.samples,
            s.images_ok,
            s.captions,
            s.empty_captions,
            s.truncated_captions,
            len(s.missing),
            len(s.corrupt),
            sum(len(g) - 1 for g in s.duplicates),
            len(s.problems),
        )
        for s in report.splits
    ]
    title = f"{report.path} ({report.format}; caption tokens by {report.text_encoder})"
    ui.show(ui.table(title, columns, rows))
    for s in report.splits:
        class_rows = [
            (name, len(counts), _top_classes(counts), s.unlabelled.get(name, 0)) for name, counts in s.classes.items()
        ]
        if class_rows:
            ui.show(
                ui.table(f"classes in {s.split}", ["label", "classes", "images per class", "unlabelled"], class_rows)
            )
    for s in report.splits:
        for p in s.missing:
            ui.error(f"{s.split}: missing image {p}")
        for reason in s.corrupt:
            ui.error(f"{s.split}: {reason}")
        for problem in s.problems:
            ui.error(f"{s.split}: {problem}")
        for group in s.duplicates:
            ui.warning(f"{s.split}: identical images: {', '.join(group)}")
    for group in report.shared_across_splits:
        ui.warning(f"the same image is in several splits: {', '.join(group)}")
    if report.errors:
        ui.error(f"{report.errors} error(s) found")
    else:
        ui.info("no errors found")


def _top_classes(counts: dict[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{c} {n}" for c, n in ranked[:_MAX_CLASSES_SHOWN])
    rest = len(ranked) - _MAX_CLASSES_SHOWN
    return f"{shown}, … {rest} more" if rest > 0 else shown


@app.command("download")
def download(
    name: Annotated[str, typer.Argument(help="Data set to download: medpix2 or openi.", show_default=False)],
    to: Annotated[
        Optional[Path],
        typer.Option("--to", help="Folder to unpack into (default: under MEDCLIP_HOME).", show_default=False),
    ] = None,
    sha256: Annotated[
        Optional[str],
        typer.Option(
            "--sha256",
            help="Expected sha256 of the archive (refused when it differs); openi: reports=HEX,png=HEX.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again and replace an existing copy.")] = False,
    revision: Annotated[
        Optional[str],
        typer.Option(
            "--revision",
            help="Take this branch, tag or commit instead of the pinned release (e.g. main); its content is not verified.",
            show_default=False,
        ),
    ] = None,
    as_json: options.Json = False,
) -> None:
    """Download a public data set, resumably, verified, and unpack it safely.

    MedPix 2.0 comes from its GitHub repository (CHILab1/MedPix-2.0) at a pinned commit, and its
    unpacked files must have the pinned sha256; --revision takes a newer one. MEDCLIP_MEDPIX_URL
    points at a mirror (its content is yours to vouch for: pass --sha256).

    openi is the Indiana University chest X-ray collection: NLMCXR_reports.tgz and NLMCXR_png.tgz from the NLM Open-i collections page (about 1.3 GB); MEDCLIP_OPENI_URL points at a folder mirroring both. Its split by report is fixed at download, in medclip-openi.json.

    An interrupted download resumes where it stopped when run again. Commands that take --data use the downloaded MedPix 2.0 copy by default; for OpenI pass --data (experiments with data.dataset = "openi" use the downloaded OpenI copy).

    Examples:

        medclip data download medpix2

        medclip data download medpix2 --to ~/data/medpix2

        medclip data download medpix2 --revision main --to ~/data/medpix2-newest

        medclip data download openi --to ~/data/openi
    """
    from medclip_cli.data.download import download_medpix2
    from medclip_cli.errors import UsageError

    if name.lower() not in _DATASETS:
        raise UsageError(f"unknown data set {name!r} to download (known: {', '.join(_DATASETS)})")
    if name.lower() == "openi":
        if revision is not None:
            raise UsageError("--revision is for medpix2 (a git repository); OpenI's archives have no revisions")
        _download_openi(to, sha256, force, as_json)
        return
    with ui.progress(enabled=not as_json) as reporter:
        result = download_medpix2(to, expected_sha256=sha256, force=force, revision=revision, progress=reporter)
    if as_json:
        ui.print_json(
            {
                "root": str(result.root),
                "url": result.url,
                "sha256": result.sha256,
                "bytes": result.size,
                "reused": result.reused,
                "revision": result.revision,
                "content_sha256": result.content_sha256,
                "verified": result.verified,
            }
        )
        return
    verb = "already downloaded" if result.reused else "downloaded"
    ui.info(f"MedPix 2.0 {verb}: {result.root} (sha256 {result.sha256[:16]}…, {result.size:,} bytes)")
    if result.verified:
        ui.info(f"revision {result.revision[:12]}: content matches the pinned sha256")
    else:
        ui.warning(f"revision {result.revision}: not the pinned release, content unverified (content sha256 {result.content_sha256})")


def _download_openi(to: Path | None, sha256: str | None, force: bool, as_json: bool) -> None:
    from medclip_cli.data.openi_download import download_openi, parse_checksums

    expected = parse_checksums(sha256)
    with ui.progress(enabled=not as_json) as reporter:
        result = download_openi(to, expected_sha256=expected, force=force, progress=reporter)
    archives = [{"name": a.name, "url": a.url, "sha256": a.sha256, "bytes": a.size} for a in result.archives]
    if as_json:
        ui.print_json({"root": str(result.root), "archives": archives, "bytes": result.size, "reused": result.reused})
        return
    verb = "already downloaded" if result.reused else "downloaded"
    sums = ", ".join(f"{a.name} sha256 {a.sha256[:16]}…" for a in result.archives)
    ui.info(f"OpenI {verb}: {result.root} ({sums}; {result.size:,} bytes; use it with --data {result.root})")
