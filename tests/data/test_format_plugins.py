"""A data-set format contributed by a plugin, registered in-process through the same hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from medclip_cli import hookimpl
from medclip_cli.data import Dataset, DatasetFormat, Sample, dataset_formats, load_dataset
from medclip_cli.errors import PluginError
from medclip_cli.plugins import get_plugin_manager


class _ListFormat:
    """Reads ``*.list`` files: one image path per line, caption after a tab."""

    @hookimpl
    def register_datasets(self, register):
        register(
            DatasetFormat(
                name="listfile",
                description="image<TAB>caption lines",
                detect=lambda p: p.suffix == ".list",
                splits=lambda p: ["all"],
                load=self.load,
            )
        )

    @staticmethod
    def load(path: Path, split: str = "all", **_: object) -> Dataset:
        samples = []
        for line in path.read_text().splitlines():
            image, caption = line.split("\t")
            samples.append(Sample(id=image, image=path.parent / image, caption=caption))
        return Dataset("listfile", path, split, samples, {})


class _Duplicate:
    @hookimpl
    def register_datasets(self, register):
        register(DatasetFormat("csv", "another csv", lambda p: False, lambda p: [], lambda p, s: None))


@pytest.fixture
def registered():
    pm = get_plugin_manager()
    added = []

    def register(obj, name):
        pm.register(obj, name=name)
        added.append(obj)

    yield register
    for obj in added:
        pm.unregister(obj)


def test_plugin_format_is_detected_and_loaded(tmp_path, registered):
    registered(_ListFormat(), "listfile-plugin")
    manifest = tmp_path / "pairs.list"
    manifest.write_text("a.png\tfirst\nb.png\tsecond\n")
    fmt = dataset_formats()["listfile"]
    assert fmt.plugin == "listfile-plugin"
    ds = load_dataset(manifest, "all")
    assert [s.caption for s in ds.samples] == ["first", "second"]


def test_options_a_plugin_format_does_not_take_are_a_usage_error(tmp_path, registered):
    from medclip_cli.data import list_splits
    from medclip_cli.errors import UsageError

    registered(_ListFormat(), "listfile-plugin")
    manifest = tmp_path / "pairs.list"
    manifest.write_text("a.png\tfirst\n")
    with pytest.raises(UsageError, match="--caption-column: the listfile data-set format takes no such option"):
        list_splits(manifest, caption_column="text")
    assert list_splits(manifest, caption_column=None) == ["all"]


def test_duplicate_format_names_both_plugins(registered):
    registered(_Duplicate(), "dup-plugin")
    with pytest.raises(PluginError, match="'csv' is registered by both 'datasets' and 'dup-plugin'"):
        dataset_formats()


def test_unknown_format_lists_known(tmp_path):
    from medclip_cli.errors import UsageError

    with pytest.raises(UsageError, match=r"unknown --dataset 'parquet' \(known: medpix2, openi, csv, jsonl, folder\)"):
        load_dataset(tmp_path, "all", format="parquet")
