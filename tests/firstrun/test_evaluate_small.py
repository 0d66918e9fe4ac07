"""Small things of ``evaluate`` a first user meets: --strict, model names by run."""

from __future__ import annotations

import json

from tests.evaluation.conftest import write_medpix

RECORDS = [{"image": f"MPX{i}_a", "modality": "CT" if i % 2 else "MR", "caption": f"scan {i}"} for i in range(6)]


def _data_with_a_bad_image(tmp_path):
    root = write_medpix(tmp_path / "data", "test", RECORDS)
    (root / "MedPix-2-0" / "images" / "MPX3_a.png").write_bytes(b"this is not a PNG")
    return root


def test_evaluate_strict_stops_at_an_unreadable_image(cli, tmp_path):
    data = _data_with_a_bad_image(tmp_path)
    args = ["evaluate", "--data", data, "--task", "modality", "--encoder", "test-vit", "--pretrained", "none", "--device", "cpu"]
    lenient = cli(*args, "--output", tmp_path / "a", "--json")
    assert lenient.exit_code == 0, lenient.output
    skipped = json.loads(lenient.stdout)["models"][0]["image_embeddings"]["skipped"]
    assert [s["id"] for s in skipped] == ["MPX3_a"]

    strict = cli(*args, "--output", tmp_path / "b", "--strict")
    assert strict.exit_code == 1
    message = " ".join(strict.output.split())
    assert "MPX3_a.png: not a readable image" in message and "run without --strict" in message
    assert not (tmp_path / "b" / "results.json").exists()


def test_models_are_named_by_their_run(tmp_path):
    from medclip_cli.commands.evaluate import run_names

    runs = tmp_path / "runs"
    paths = [runs / "vit-b-32" / "last", runs / "rn50" / "last", runs / "rn50" / "best", tmp_path / "other" / "rn50" / "last"]
    assert run_names(paths) == ["vit-b-32/last", "runs/rn50/last", "best", "other/rn50/last"]
    assert run_names([runs / "a" / "best"]) == ["best"]
