"""Hostile WebDataset shards where a table row cannot show the outcome (the rows are in
``cases_shards.py``): a streamed ``--strict`` run stops mid-run at the bad sample, one line naming
the shard; nothing is ever written under a member's own name, on either path; a shard of many
tiny members reads as headers; a stream whose every sample is refused stops; an over-long caption
gets the same line on both paths."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.conftest import message_lines
from tests.reliability import inputs_shards as shards

_FINETUNE = ["--encoder", "test-vit", "--val-split", "none", "--epochs", "1", "--batch-size", "2", "--max-steps", "1", "--device", "cpu"]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize(("kind", "line", "options"), [(k, line, o) for k, _, line, o in shards.KINDS], ids=[k[0] for k in shards.KINDS])
def test_a_strict_streamed_run_stops_at_the_bad_sample_with_one_line_naming_the_shard(cli, tmp_path, _isolated_home, monkeypatch, kind, line, options):
    monkeypatch.setenv("MEDCLIP_MAX_IMAGE_BYTES", str(1 << 30))  # a limit option sets it for the process: undone after
    data = shards.shard_set(tmp_path / "shards", kind)
    before = _files(tmp_path)
    out = tmp_path / "run"
    result = cli(*options, "finetune", "--data", data, "--stream", "--strict", "--shuffle-buffer", "1", "--output", out, *_FINETUNE)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = message_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(data / "train" / "00000.tar") in lines[0] and line in lines[0]
    assert "re-create" in lines[0] or "without --strict" in lines[0]  # what to do
    new = _files(tmp_path) - before
    assert {Path(p).parts[0] for p in new} <= {"run"}  # only the run folder the next run starts again
    cache = _isolated_home / "cache"
    assert not (cache / "shards").exists() and not (cache / "pixels").exists()  # a stream unpacks nothing


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_no_member_name_is_ever_written_on_either_path(cli, tmp_path, _isolated_home, kind):
    data = shards.shard_set(tmp_path / "deep" / "er" / "shards", kind)
    before = _files(tmp_path)
    assert cli("data", "check", data).exit_code == 1
    for extra in ([], ["--stream", "--shuffle-buffer", "1"]):
        out = tmp_path / ("stream" if extra else "cached")
        result = cli("finetune", "--data", data, "--output", out, *extra, *_FINETUNE)
        assert result.exit_code == 0, result.output
    new = {p for p in _files(tmp_path) - before if Path(p).parts[0] not in ("stream", "cached")}
    assert new == set()  # nothing beside the shards, above them or anywhere in the test's folder
    assert not Path("/tmp/medclip-pwned.png").exists() and not Path("/tmp/medclip-pwned.txt").exists()
    unpacked = _files(_isolated_home / "cache" / "shards")
    # The cached path's unpacked images: <shard identity>/<hash of the key>.png and a done marker, each shard once per split.
    names = {Path(p).name for p in unpacked}
    assert all(len(Path(p).parts) == 2 for p in unpacked) and not any("pwned" in n or "evil" in n for n in names)
    assert len([n for n in names if n.endswith(".png")]) == shards.GOOD  # the good samples, the bad one not unpacked


def test_a_shard_of_fifty_thousand_tiny_members_reads_them_as_headers_only(cli, tmp_path, _isolated_home):
    import json

    data = shards.shard_set(tmp_path / "shards", "symlink")
    with tarfile.open(data / "train" / "00000.tar", "a") as archive:
        info = tarfile.TarInfo()
        for k in range(50_000):  # members medclip does not read (no image, no caption): headers only
            info.name, info.size = f"noise/{k:06d}.xyz", 0
            archive.addfile(info)
    result = cli("data", "check", data / "train", "--json")
    assert result.exit_code == 1, result.output  # the symlink sample, listed once; nothing for the noise
    (split,) = json.loads(result.stdout)["splits"]
    assert split["samples"] == shards.GOOD and len(split["problems"]) == 1 and "evil.png" in split["problems"][0]
    unpacked = _files(_isolated_home / "cache" / "shards")
    assert len(unpacked) == shards.GOOD + 1  # the good images and the done marker, no file per member


def test_a_stream_whose_every_sample_is_refused_stops_instead_of_reading_its_shards_forever(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDCLIP_MAX_IMAGE_BYTES", str(1 << 30))  # the option below sets it for the process: undone after
    data = shards.shard_set(tmp_path / "shards", "symlink")
    result = cli("--max-image-bytes", "10", "finetune", "--data", data, "--stream", "--output", tmp_path / "run", *_FINETUNE)
    assert result.exit_code == 1, result.output
    lines = message_lines(result.stderr)
    assert len(lines) == 1 and "no readable sample in shards 00000.tar" in lines[0] and "medclip data check" in lines[0]


def test_a_caption_over_the_manifests_field_limit_is_skipped_with_the_same_line_on_both_paths(tmp_path):
    import io

    from medclip_cli.data import load_dataset
    from medclip_cli.data.preprocess import PreprocessConfig
    from medclip_cli.data.shard_stream import decode_sample, read_shard
    from medclip_cli.errors import DataError

    data = shards.shard_set(tmp_path / "shards", "symlink")
    tar = data / "train" / "00000.tar"
    with tarfile.open(tar, "a") as archive:  # 1,000,001 characters: under the member limit, over the field limit
        for name, blob in (("wordy.png", shards.png_bytes(5)), ("wordy.txt", b"x" * 1_000_001)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    line = "sample 'wordy': a caption of 1,000,001 characters, over the limit of 1,000,000; skipped"
    cached = load_dataset(data, "train", "webdataset")
    assert len(cached) == shards.GOOD and any(p.endswith(line) for p in cached.problems)
    (wordy,) = [s for s in read_shard(tar) if getattr(s, "key", None) == "wordy"]
    with pytest.raises(DataError) as err:
        decode_sample(wordy, PreprocessConfig(image_size=8))
    assert str(err.value).endswith(line)
