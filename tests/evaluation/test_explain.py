"""Grad-CAM maps of the image–text similarity: files per label, every tower kind, and the
model-randomisation sanity check of Adebayo et al. 2018 ("Sanity checks for saliency maps")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from medclip_cli.evaluation.explain import UnsupportedTowerError, cam_layer, explain_pixels, spearman
from medclip_cli.models import resolve_model

LABELS = ["left", "right"]
TEMPLATES = ["a {}"]
#: Mean Spearman rank correlation, over images and labels, between the maps of a tower and of the
#: same tower with its image weights randomised, must stay below this. A map that ignores the
#: weights (an edge map, the image itself) scores 1.0.
SANITY_MAX_RANK_CORRELATION = 0.5


def _model(encoder: str, seed: int):
    torch.manual_seed(seed)
    return resolve_model(None, encoder, None, "none")


def _square_images(size: int, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a bright square in the left (label 0) or right (label 1) half."""
    side = rng.integers(0, 2, n)
    images = np.clip(rng.normal(60, 25, (n, size, size)), 0, 255)
    w = size // 4
    for i, s in enumerate(side):
        y = rng.integers(0, size - w)
        x = rng.integers(0, size // 2 - w) + s * (size // 2)
        images[i, y : y + w, x : x + w] = 230
    return np.repeat(images.astype(np.uint8)[..., None], 3, axis=3), side


def _trained(encoder: str):
    """A tiny tower trained to tell a left square from a right one through the zero-shot head
    (text features fixed): its maps have something to show."""
    from medclip_cli.data.preprocess import normalize_batch
    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier

    model = _model(encoder, 0)
    size = model.preprocess.image_size
    classifier = build_zero_shot_classifier(model, LABELS, TEMPLATES).detach()
    optimiser = torch.optim.Adam(model.module.visual.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    model.module.train()
    for _ in range(200):
        pixels, side = _square_images(size, 32, rng)
        features = torch.nn.functional.normalize(model.module.encode_image(normalize_batch(pixels, model.preprocess)), dim=-1)
        similarity = features @ classifier
        # The random text tower's two label embeddings are close (cosine ~0.85): the gap between
        # them, rescaled, is what the image tower learns to move along.
        logits = 20 * (similarity - similarity.mean(1, keepdim=True)) / (classifier[:, 0] - classifier[:, 1]).norm()
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(side))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.module.eval()
    pixels, side = _square_images(size, 64, rng)
    with torch.no_grad():
        accuracy = float(((model.encode_images(normalize_batch(pixels, model.preprocess)) @ classifier).argmax(1).numpy() == side).mean())
    assert accuracy >= 0.9, f"the tiny {encoder} did not learn the task ({accuracy:.2f})"
    return model


def _randomised_image_tower(model, encoder: str, seed: int):
    """The same model with every image-tower weight drawn again (text tower and scale kept)."""
    other = _model(encoder, seed)
    state = {k: v for k, v in model.module.state_dict().items() if not k.startswith("visual.")}
    other.module.load_state_dict(state, strict=False)
    changed = [k for k, v in other.module.state_dict().items() if k.startswith("visual.") and v.dtype.is_floating_point
               and not torch.equal(v, model.module.state_dict()[k])]
    assert changed, "the randomised tower must differ"
    return other


def _images(size: int, n: int = 3) -> list[np.ndarray]:
    return list(_square_images(size, n, np.random.default_rng(5))[0])


@pytest.fixture
def one_thread():
    """Training a tiny tower with torch's default threads on a crowded CPU is several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # trains two tiny towers for 200 steps each (about a minute on a loaded 2-core CPU)
@pytest.mark.parametrize("encoder", ["test-vit", "test-resnet"])
def test_model_randomisation_sanity_check(encoder, one_thread):
    model = _trained(encoder)
    randomised = _randomised_image_tower(model, encoder, 1)
    size = model.preprocess.image_size
    rhos, repeat, edge = [], [], []
    for pixels in _images(size, 4):
        maps = explain_pixels(model, pixels, LABELS, TEMPLATES)
        again = explain_pixels(model, pixels, LABELS, TEMPLATES)
        other = explain_pixels(randomised, pixels, LABELS, TEMPLATES)
        gray = pixels[..., 0].astype(float)
        edges = np.hypot(*np.gradient(gray))  # a "saliency" that ignores the model
        for a, b, c in zip(maps, again, other):
            assert a.cam.shape == (size, size) and 0 <= a.cam.min() and a.cam.max() <= 1
            rhos.append(spearman(a.cam, c.cam))
            repeat.append(spearman(a.cam, b.cam))
            edge.append(spearman(edges, edges))
    assert np.mean(repeat) > 0.99  # the method is deterministic for one set of weights
    assert np.mean(rhos) < SANITY_MAX_RANK_CORRELATION, rhos
    assert np.mean(edge) >= SANITY_MAX_RANK_CORRELATION  # the check would catch a weight-blind map


def test_explain_command_writes_overlay_and_map_per_label(tmp_path, cli):
    image = tmp_path / "scan.png"
    Image.fromarray(_images(48, 1)[0]).save(image)
    out = tmp_path / "maps"
    result = cli("explain", image, "--labels", ",".join(LABELS), "--encoder", "test-resnet", "--device", "cpu", "--output", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)[0]
    assert report["method"] == "Grad-CAM on visual.layer4"
    assert sum(x["probability"] for x in report["labels"]) == pytest.approx(1.0, abs=1e-5)
    for label in LABELS:
        cam = np.load(out / f"scan_{label}.npy")
        assert cam.shape == (64, 64) and cam.dtype == np.float32
        with Image.open(out / f"scan_{label}.png") as png:
            assert png.size[0] > 300  # the figure (image, overlay, colour bar), not the bare map
    via_classify = cli("classify", image, "--labels", ",".join(LABELS), "--encoder", "test-vit", "--device", "cpu",
                       "--explain", "--explain-dir", tmp_path / "vit", "--json")
    assert via_classify.exit_code == 0, via_classify.output
    assert json.loads(via_classify.stdout)[0]["method"] == "Grad-CAM on visual.transformer.resblocks[-1].ln_1"
    assert np.load(tmp_path / "vit" / "scan_left.npy").shape == (32, 32)


def test_an_unsupported_tower_is_named():
    with pytest.raises(UnsupportedTowerError, match="image tower Linear is not supported"):
        cam_layer(torch.nn.Linear(2, 2))
