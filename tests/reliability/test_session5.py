"""Session 5's features under hostile use, where a table row cannot show the outcome: a resumed
prediction file, maps that must not overwrite each other, no stale shards, a staged re-run that
names only its final folder."""

from __future__ import annotations

import json
import tarfile

from tests.reliability import inputs as make

_CLASSIFY = ["--labels", "a,b", "--encoder", "test-vit", "--device", "cpu"]


def _images(root, n=3):
    for i in range(n):
        make.png(root / f"s{i}.png", seed=i)
    return root


def test_classify_resumes_a_prediction_csv_saved_again_by_a_spreadsheet(cli, tmp_path):
    folder, out = _images(tmp_path / "imgs"), tmp_path / "o.csv"
    assert cli("classify", folder, "-r", "-o", out, *_CLASSIFY).exit_code == 0
    rows = out.read_text(encoding="utf-8").splitlines()
    out.write_bytes(("\ufeff" + "\r\n".join(rows[:-1]) + "\r\n").encode())  # BOM, CRLF, last row deleted
    result = cli("classify", folder, "-r", "-o", out, *_CLASSIFY)
    assert result.exit_code == 0, result.output
    assert "2 already there, skipped" in result.output
    import csv

    with open(out, newline="", encoding="utf-8-sig") as fh:
        paths = [row[0] for row in csv.reader(fh)][1:]
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir())  # each image once


def test_a_refused_foreign_output_is_left_byte_for_byte(cli, tmp_path):
    folder, out = _images(tmp_path / "imgs"), tmp_path / "o.jsonl"
    out.write_bytes(b"my notes, no newline")
    result = cli("classify", folder, "-r", "-o", out, *_CLASSIFY)
    assert result.exit_code == 1 and "is not a prediction file" in result.stderr
    assert out.read_bytes() == b"my notes, no newline"


def test_explain_keeps_the_maps_of_same_named_images_apart(cli, tmp_path):
    a, b = make.png(tmp_path / "a" / "x.png", seed=1), make.png(tmp_path / "b" / "X.png", seed=2)
    result = cli("explain", a, b, "-o", tmp_path / "maps", *_CLASSIFY, "--json")
    assert result.exit_code == 0, result.output
    files = [f for item in json.loads(result.stdout) for f in item["files"]]
    assert len(files) == len(set(f.lower() for f in files)) == 8
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(p.rsplit("/", 1)[-1] for p in files)


def test_sharding_again_replaces_the_split_folder_whole(cli, tmp_path):
    data = make.csv_set(tmp_path / "data", images=4)
    assert cli("data", "shard", data, "--output", tmp_path / "shards", "--samples-per-shard", "1").exit_code == 0
    assert len(list((tmp_path / "shards" / "train").glob("*.tar"))) == 4
    make.csv_set(tmp_path / "data", images=2)  # the manifest now lists two images
    assert cli("data", "shard", data, "--output", tmp_path / "shards", "--samples-per-shard", "1").exit_code == 0
    tars = sorted((tmp_path / "shards" / "train").glob("*.tar"))
    assert [t.name for t in tars] == ["00000.tar", "00001.tar"]  # the earlier run's 00002/00003 are gone
    assert sum(1 for t in tars for m in tarfile.open(t) if m.name.endswith(".json")) == 2
    assert not [p for p in (tmp_path / "shards").iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_rebase_paths_rewrites_text_json_and_checkpoint_state(tmp_path):
    import torch

    from medclip_cli.experiments.staging import rebase_paths

    work, final = tmp_path / ".exp.new", tmp_path / "exp"
    (work / "finetune" / "checkpoints" / "step-1").mkdir(parents=True)
    (work / "finetune" / "config.json").write_text(json.dumps({"output": str(work / "finetune"), "n": 1}))
    (work / "finetune" / "metrics.jsonl").write_text(json.dumps({"run": str(work)}) + "\n")
    (work / "report.md").write_text(f"see {work}/finetune/last\n")
    (work / "weights.bin").write_bytes(str(work).encode())  # an unknown binary file is left alone
    state = {"step": 1, "config": {"output": str(work / "finetune"), "tags": [str(work), 3]}, "t": torch.ones(2)}
    torch.save(state, work / "finetune" / "checkpoints" / "step-1" / "training_state.pt")

    changed = rebase_paths(work, work, final)

    assert len(changed) == 4
    assert json.loads((work / "finetune" / "config.json").read_text()) == {"output": str(final / "finetune"), "n": 1}
    assert json.loads((work / "finetune" / "metrics.jsonl").read_text()) == {"run": str(final)}
    assert (work / "report.md").read_text() == f"see {final}/finetune/last\n"
    loaded = torch.load(work / "finetune" / "checkpoints" / "step-1" / "training_state.pt", weights_only=True)
    assert loaded["config"] == {"output": str(final / "finetune"), "tags": [str(final), 3]}
    assert torch.equal(loaded["t"], torch.ones(2)) and loaded["step"] == 1
    assert (work / "weights.bin").read_bytes() == str(work).encode()
    assert rebase_paths(work, work, final) == []  # nothing left to rewrite
