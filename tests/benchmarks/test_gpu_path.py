"""The GPU-path engine change (NHWC convolutional towers) keeps the numerics and the bundle format.

``prefer_channels_last`` only acts for a CUDA device; converting the layout needs no GPU, so these
tests hand it ``torch.device("cuda")`` and run the converted module on the CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch

from medclip_cli.runtime.kernels import prefer_channels_last
from medclip_cli.models import resolve_model
from medclip_cli.models.bundle import load_bundle, save_bundle

CUDA = torch.device("cuda")


def _model(encoder: str):
    torch.manual_seed(0)
    return resolve_model(None, encoder, None, "none", "auto", None)


def test_cpu_device_leaves_the_model_alone():
    model = _model("test-resnet")
    assert prefer_channels_last(model.module, torch.device("cpu")) is False
    assert model.module.visual.conv1.weight.is_contiguous()


def test_vit_is_left_alone_on_cuda():
    model = _model("test-vit")
    assert prefer_channels_last(model.module, CUDA) is False
    assert model.module.visual.conv1.weight.is_contiguous()


def test_resnet_goes_nhwc_with_the_same_numbers(tmp_path):
    model = _model("test-resnet")
    reference = copy.deepcopy(model.module).eval()
    assert prefer_channels_last(model.module, CUDA) is True
    weight = model.module.visual.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    size = model.preprocess.image_size
    pixels = torch.randint(0, 256, (4, size, size, 3), dtype=torch.uint8)
    from medclip_cli.data.preprocess import normalize_batch

    images = normalize_batch(pixels, model.preprocess)
    assert images.is_contiguous(memory_format=torch.channels_last)  # the batch is NHWC already
    model.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.module.encode_image(images), reference.encode_image(images), rtol=1e-4, atol=1e-5)
    # A bundle written from NHWC weights loads back to the same tensors.
    save_bundle(model, tmp_path / "bundle")
    loaded = load_bundle(tmp_path / "bundle")
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[name], tensor, msg=name)


@pytest.mark.parametrize("encoder", ["test-resnet", "test-vit"])
def test_one_training_step_matches_between_layouts(encoder):
    """The engine's step on an NHWC tower gives the same loss and update as on an NCHW one."""
    from benchmarks.step_ceiling import make_step_run, memory_batches

    runs = []
    for nhwc in (False, True):
        run = make_step_run(encoder, batch_size=4, device="cpu", precision="fp32")
        if nhwc:
            prefer_channels_last(run.model.module, CUDA)
        runs.append(run)
    batches = memory_batches(runs[0], ["a chest x-ray", "axial ct of the head"] * 8, count=2)
    losses = [[float(r.train_step(iter(batches))) for _ in range(2)] for r in runs]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for (name, a), b in zip(runs[0].model.module.state_dict().items(), runs[1].model.module.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
