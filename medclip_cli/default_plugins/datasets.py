"""Built-in data-set formats, registered exactly like a third-party plugin's."""

from __future__ import annotations

from medclip_cli import hookimpl


@hookimpl
def register_datasets(register):
    from medclip_cli.data import folder, medpix2, openi, tabular
    from medclip_cli.data.dataset import DatasetFormat

    # Registration order is detection order: the most specific layout first.
    register(
        DatasetFormat(
            name="medpix2",
            description="MedPix 2.0 as published: Descriptions.json, splitted_dataset/, images/",
            detect=medpix2.detect,
            splits=medpix2.splits,
            load=medpix2.load,
        )
    )
    register(
        DatasetFormat(
            name="openi",
            description="OpenI Indiana University chest X-rays as published: ecgen-radiology/*.xml, NLMCXR_png/",
            detect=openi.detect,
            splits=openi.splits,
            load=openi.load,
        )
    )
    register(
        DatasetFormat(
            name="csv",
            description="CSV/TSV manifest: image path, caption, label and split columns (delimiter sniffed)",
            detect=tabular.detect_csv,
            splits=tabular.splits_csv,
            load=tabular.load_csv,
        )
    )
    register(
        DatasetFormat(
            name="jsonl",
            description="JSON lines: one object per image; nested keys as dotted names (Description.Caption)",
            detect=tabular.detect_jsonl,
            splits=tabular.splits_jsonl,
            load=tabular.load_jsonl,
        )
    )
    register(
        DatasetFormat(
            name="folder",
            description="image folders: root/<split>/<class>/* or root/<class>/* (labels only)",
            detect=folder.detect,
            splits=folder.splits,
            load=folder.load,
        )
    )
