"""``finetune --encoder rn50`` starts from the encoder's pretrained weights; from scratch is said."""

from __future__ import annotations

import pytest

from medclip_cli.models.defaults import canonical_tag
from tests.training.conftest import make_small_medpix


@pytest.mark.parametrize(
    "encoder, tag",
    [("rn50", "openai"), ("vit-b-32", "openai"), ("minilm-l6", "pretrained"), ("timm:resnet50", "imagenet"), ("test-vit", None)],
)
def test_canonical_tags(encoder, tag):
    assert canonical_tag(encoder) == tag


@pytest.fixture(scope="module")
def tiny_medpix(tmp_path_factory):
    return make_small_medpix(tmp_path_factory.mktemp("tiny"), 8, 4)


def test_finetune_rn50_defaults_to_the_openai_weights_not_scratch(cli, tiny_medpix, tmp_path):
    # Offline and not cached: the run must ask for the OpenAI weights (never silently start from scratch).
    result = cli("finetune", "--encoder", "rn50", "--data", tiny_medpix, "--output", tmp_path / "run", "--device", "cpu")
    assert result.exit_code == 1
    assert "pretrained weights 'openai' for RN50 are not in the local cache" in " ".join(result.stderr.split())
    assert not (tmp_path / "run" / "last").exists()


def test_from_scratch_is_said_in_the_plan(cli, tiny_medpix, tmp_path):
    args = ["finetune", "--encoder", "test-vit", "--data", tiny_medpix, "--output", tmp_path / "run", "--device", "cpu",
            "--max-steps", "1", "--batch-size", "4", "--val-split", "none"]  # fmt: skip
    result = cli(*args, "--pretrained", "none")
    assert result.exit_code == 0, result.output
    assert "random init (from scratch: --pretrained none)" in result.stdout
