"""Built-in data-set formats."""

from __future__ import annotations

from medclip_cli import hookimpl


@hookimpl
def register_datasets(register):
    from medclip_cli.data import medpix2
    from medclip_cli.data.dataset import DatasetFormat

    register(
        DatasetFormat(
            name="medpix2",
            description="MedPix 2.0 as published: Descriptions.json, splitted_dataset/, images/",
            detect=medpix2.detect,
            splits=medpix2.splits,
            load=medpix2.load,
        )
    )
