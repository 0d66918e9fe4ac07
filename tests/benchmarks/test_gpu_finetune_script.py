"""The prepared GPU benchmark runs end to end on the CPU with a tiny model (no figures asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_finetune
from tests.training.conftest import make_small_medpix


@pytest.fixture(scope="module")
def small_medpix(tmp_path_factory):
    return make_small_medpix(tmp_path_factory.mktemp("medpix_bench"), 48, 8)


def test_in_memory_step_and_flops_on_cpu(tmp_path, small_medpix):
    out = gpu_finetune.main([
        "--data", str(small_medpix), "--encoder", "test-vit", "--device", "cpu", "--precision", "fp32",
        "--batch-size", "4", "--steps", "2", "--skip", "1", "--no-open-clip", "--no-end-to-end",
        "--json", str(tmp_path / "figures.json"),
    ])  # fmt: skip
    saved = json.loads((tmp_path / "figures.json").read_text())
    assert saved["ceiling"] == out["ceiling"] > 0
    # Forward + backward of a ViT and a text transformer: at least 3x the forward's matmul FLOPs.
    assert saved["step_flops"] > 1e6
    assert 0 < saved["mfu_ceiling"] < 1


@pytest.mark.slow
def test_end_to_end_run_is_measured_on_cpu(tmp_path, small_medpix):
    out = gpu_finetune.main([
        "--data", str(small_medpix), "--encoder", "test-vit", "--device", "cpu", "--precision", "fp32",
        "--batch-size", "4", "--steps", "2", "--skip", "1", "--workers", "1", "--no-open-clip",
    ])  # fmt: skip
    assert out["end_to_end"] > 0 and out["end_to_end_wall_s"] > 0


def test_open_clip_side_needs_a_counterpart(tmp_path, small_medpix):
    with pytest.raises(SystemExit, match="no open_clip_train counterpart"):
        gpu_finetune.main([
            "--data", str(small_medpix), "--encoder", "test-vit", "--device", "cpu", "--precision", "fp32",
            "--batch-size", "4", "--steps", "1", "--skip", "0", "--no-end-to-end",
        ])  # fmt: skip
