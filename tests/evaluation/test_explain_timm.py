"""``explain`` on timm image towers (``--encoder timm:<name> --pretrained none``: tiny random
weights): each map equals a Grad-CAM computed here by hand from the layer's activations and the
gradient of the image–text cosine, and a tower without a spatial map is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medclip_cli.evaluation.explain import cam_layer, explain_pixels
from medclip_cli.models import resolve_model

LABELS = ["left", "right"]
TEMPLATES = ["a {}"]


def _model(encoder: str):
    torch.manual_seed(0)
    return resolve_model(None, encoder, "test-text", "none")


def _pixels(size: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 120, (size, size), dtype=np.uint8)
    image[size // 4 : size // 2, size // 2 : 3 * size // 4] = 240
    return np.repeat(image[..., None], 3, axis=2)


def _grad_cam_by_hand(model, pixels: np.ndarray, label: int) -> np.ndarray:
    """Selvaraju et al.: ReLU(Σ_c mean_hw(∂score/∂A_c) · A_c), bilinear to the input, in [0, 1]."""
    import cv2
    import torch.nn.functional as F

    from medclip_cli.data.preprocess import normalize_batch
    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier

    target = cam_layer(model.module.visual)
    text = build_zero_shot_classifier(model, LABELS, TEMPLATES)[:, label].detach()
    kept = {}
    hook = target.layer.register_forward_hook(lambda _m, _i, out: kept.update(a=out))
    try:
        batch = normalize_batch(pixels[None], model.preprocess).requires_grad_(True)
        score = (F.normalize(model.module.encode_image(batch).float(), dim=-1) * text).sum()
        (grads,) = torch.autograd.grad(score, kept["a"])
    finally:
        hook.remove()
    activations = kept["a"].detach()
    if target.reshape is not None:
        activations, grads = target.reshape(activations), target.reshape(grads)
    trunk = model.module.visual.trunk
    channels = trunk.embed_dim if hasattr(trunk, "blocks") else trunk.feature_info[-1]["num_chs"]
    assert activations.dim() == 4 and activations.shape[1] == channels  # [1, C, h, w], whatever the trunk's layout
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activations).sum(dim=1))[0].numpy()
    return _min_max(cv2.resize(_min_max(cam), (pixels.shape[1], pixels.shape[0])))


def _min_max(cam: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam scales the layer's map, resizes it, and scales the result again."""
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-7)


@pytest.mark.parametrize(
    "encoder, layer",
    [
        ("timm:test_resnet", "visual.trunk.layer4"),
        ("timm:test_vit", "visual.trunk.blocks[-1].norm1"),
        ("timm:test_convnext", "visual.trunk.stages.3"),
        pytest.param("timm:swin_tiny_patch4_window7_224", "visual.trunk.layers.3", marks=pytest.mark.slow),
    ],
)
def test_timm_tower_map_is_grad_cam(encoder, layer):
    model = _model(encoder)
    model.module.eval()
    assert cam_layer(model.module.visual).where == layer
    pixels = _pixels(model.preprocess.image_size)
    maps = explain_pixels(model, pixels, LABELS, TEMPLATES)
    for j, e in enumerate(maps):
        assert e.cam.shape == pixels.shape[:2] and e.cam.dtype == np.float32
        assert e.cam.max() > e.cam.min()  # a map, not a constant
        np.testing.assert_allclose(e.cam, _grad_cam_by_hand(model, pixels, j), atol=2e-4)


def test_channels_last_trunk_is_read_channels_first():
    """Swin's stages give [B, H, W, C]: without the permute Grad-CAM would pool over H and W the
    wrong way round and weight rows as channels."""
    activations = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # NHWC

    class Trunk(torch.nn.Module):
        output_fmt = "NHWC"
        feature_info = [{"module": "stage", "num_chs": 5, "reduction": 32}]

        def __init__(self):
            super().__init__()
            self.stage = torch.nn.Identity()

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = Trunk()

    target = cam_layer(Tower())
    assert target.kind == "conv" and target.where == "visual.trunk.stage"
    assert torch.equal(target.reshape(activations), activations.permute(0, 3, 1, 2))


def test_tower_without_a_spatial_map_is_refused_plainly(tmp_path, cli):
    """LeViT's stages give token sequences [B, N, C]: one line naming the tower and the layer."""
    image = tmp_path / "scan.png"
    Image.fromarray(_pixels(64)).save(image)
    result = cli("explain", image, "--labels", "left,right", "--encoder", "timm:levit_128s", "--text-encoder", "test-text",
                 "--pretrained", "none", "--device", "cpu", "--output", tmp_path / "maps")
    assert result.exit_code == 2, result.output
    assert "the image tower TimmModel (LevitDistilled) is not supported" in result.output
    assert "visual.trunk.stages.2 gives an output of shape [1, 16, 384]" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())


def test_explain_command_on_a_timm_vit(tmp_path, cli):
    image = tmp_path / "scan.png"
    Image.fromarray(_pixels(96)).save(image)
    out = tmp_path / "maps"
    result = cli("explain", image, "--labels", "left,right", "--encoder", "timm:test_vit", "--text-encoder", "test-text",
                 "--pretrained", "none", "--device", "cpu", "--output", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)[0]
    assert report["method"] == "Grad-CAM on visual.trunk.blocks[-1].norm1"
    assert np.load(out / "scan_left.npy").shape == (160, 160)
