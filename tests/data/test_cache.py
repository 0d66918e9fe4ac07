"""The decode cache: the same pixels as decoding, no decoding the second time, invalidation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medclip_cli.data import Dataset, Sample, load_dataset
from medclip_cli.data import pixels as pixels_module
from medclip_cli.data.cache import pixels_dir
from medclip_cli.data.pixels import load_pixels
from medclip_cli.data.preprocess import PreprocessConfig

from .conftest import write_png


def _mixed_set(root: Path) -> Dataset:
    """Odd sizes, 16-bit, a corrupt file and a missing one."""
    paths = [
        write_png(root / "wide.png", 1, size=(90, 37)),
        write_png(root / "tall.png", 2, size=(20, 71)),
        write_png(root / "deep.png", 3, size=(50, 50), mode="I;16"),
    ]
    bad = root / "bad.png"
    bad.write_bytes(paths[0].read_bytes()[:120])
    paths += [bad, root / "gone.png", write_png(root / "last.png", 4, size=(33, 33))]
    return Dataset("test", root, "all", [Sample(p.stem, p, p.stem) for p in paths], {})


class _CountDecodes:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = pixels_module.load_image

        def counting(path, **kwargs):
            self.calls += 1
            return real(path, **kwargs)

        monkeypatch.setattr(pixels_module, "load_image", counting)


def _entries() -> list[Path]:
    return sorted(pixels_dir().glob("*/*.npy"))


@pytest.mark.parametrize("resize_mode", ["shortest", "longest", "squash"])
def test_cached_pixels_equal_decoded_pixels(tmp_path, monkeypatch, resize_mode):
    ds = _mixed_set(tmp_path)
    cfg = PreprocessConfig(image_size=24, resize_mode=resize_mode)
    plain = load_pixels(ds, cfg, cache=False)
    counter = _CountDecodes(monkeypatch)
    built = load_pixels(ds, cfg)
    assert counter.calls == len(ds)
    again = load_pixels(ds, cfg)
    assert counter.calls == len(ds)  # second load: nothing decoded
    for cached in (built, again):
        np.testing.assert_array_equal(cached.array, plain.array)
        assert cached.indices == plain.indices == [0, 1, 2, 5]
        assert cached.skipped == plain.skipped


def test_cache_matches_on_real_medpix(medpix_root):
    ds = load_dataset(medpix_root, "dev")
    cfg = PreprocessConfig()
    plain = load_pixels(ds, cfg, cache=False)
    load_pixels(ds, cfg)
    cached = load_pixels(ds, cfg)
    assert cached.array.shape == (197, 224, 224, 3)
    assert np.array_equal(cached.array, plain.array)


def test_changed_file_or_preprocessing_invalidates(tmp_path, monkeypatch):
    ds = _mixed_set(tmp_path)
    cfg = PreprocessConfig(image_size=24)
    first = load_pixels(ds, cfg)
    first_rows = np.array(first.array)
    (first_entry,) = _entries()
    write_png(tmp_path / "tall.png", 99, size=(20, 71))  # same size, new content
    counter = _CountDecodes(monkeypatch)
    second = load_pixels(ds, cfg)
    # Only the changed file (and the two broken ones, whose reasons are not kept) is decoded again.
    assert counter.calls == 3
    assert not np.array_equal(second.array[1], first_rows[1])
    np.testing.assert_array_equal(second.array[[0, 2, 3]], first_rows[[0, 2, 3]])
    assert first_entry not in _entries()  # the replaced entry is deleted
    np.testing.assert_array_equal(second.array, load_pixels(ds, cfg, cache=False).array)

    calls = counter.calls
    bilinear = load_pixels(ds, PreprocessConfig(image_size=24, interpolation="bilinear"))
    bigger = load_pixels(ds, PreprocessConfig(image_size=40))
    assert counter.calls == calls + 2 * len(ds)
    assert bigger.array.shape[1:] == (40, 40, 3)
    # mean/std only normalise later: they share the uint8 entry.
    load_pixels(ds, PreprocessConfig(image_size=24, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert counter.calls == calls + 2 * len(ds)
    plain = load_pixels(ds, PreprocessConfig(image_size=24, interpolation="bilinear"), cache=False)
    np.testing.assert_array_equal(bilinear.array, plain.array)
    assert len(_entries()) == 3  # one per geometry


def test_a_moved_copy_reuses_the_cache_and_names_its_own_files(tmp_path, monkeypatch):
    ds = _mixed_set(tmp_path / "a")
    cfg = PreprocessConfig(image_size=16)
    load_pixels(ds, cfg)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = Dataset(
        "test", tmp_path / "b", "all", [Sample(s.id, tmp_path / "b" / s.image.name, s.caption) for s in ds.samples], {}
    )
    counter = _CountDecodes(monkeypatch)
    result = load_pixels(moved, cfg)
    assert counter.calls == 0
    assert str(tmp_path / "b" / "bad.png") in result.skipped[0][1]
    assert str(tmp_path / "a") not in " ".join(r for _, r in result.skipped)


def test_interrupted_build_leaves_no_entry(tmp_path):
    ds = _mixed_set(tmp_path)

    class Interrupt:
        def task(self, description, total=None):
            return description

        def advance(self, task, n=1, **fields):
            if task.startswith("caching"):
                raise KeyboardInterrupt

        def done(self, task):
            pass

        def log(self, message):
            pass

    with pytest.raises(KeyboardInterrupt):
        load_pixels(ds, PreprocessConfig(image_size=16), progress=Interrupt())
    assert _entries() == []
    assert [p.name for p in pixels_dir().rglob("*.tmp")] == []
    assert load_pixels(ds, PreprocessConfig(image_size=16)).indices == [0, 1, 2, 5]


def test_unwritable_cache_falls_back_to_decoding(tmp_path, monkeypatch):
    ds = _mixed_set(tmp_path / "data")
    blocker = tmp_path / "home"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("MEDCLIP_HOME", str(blocker))
    with pytest.warns(UserWarning, match="decode cache unavailable"):
        result = load_pixels(ds, PreprocessConfig(image_size=16))
    assert result.indices == [0, 1, 2, 5]
