"""Where the model looks: Grad-CAM maps of the image–text similarity (pytorch-grad-cam).

The score explained for a label is the cosine similarity between the image embedding and the
label's text embedding (its prompt ensemble), the quantity the zero-shot softmax is built from.
Grad-CAM (Selvaraju et al. 2017, the ``grad-cam`` package) weights a layer's activations by the
spatially pooled gradient of that score:

- convolutional towers (open_clip ModifiedResNet, timm CNNs): the last convolutional stage;
- ViTs (open_clip VisionTransformer, timm ViTs): the input norm of the last block, whose patch
  tokens are reshaped to their grid (the package's ``reshape_transform`` recipe for ViTs; the
  last block's *output* patch tokens do not reach a class-token embedding, their inputs do).

Any other tower raises :class:`UnsupportedTowerError` naming it. Maps are at the model's input
resolution over the preprocessed (resized, centre-cropped) image, scaled to [0, 1] per map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from medclip_cli.atomic import atomic_open, save_png
from medclip_cli.errors import UsageError


class UnsupportedTowerError(UsageError):
    """The image tower has no layer Grad-CAM is known to work on."""


@dataclass
class Explanation:
    label: str
    probability: float  # zero-shot softmax over the labels
    similarity: float  # cosine(image, label text)
    cam: np.ndarray  # [H, W] float32 in [0, 1]


@dataclass(frozen=True)
class CamLayer:
    layer: object  # torch.nn.Module
    reshape: Callable | None  # tokens [B, T, D] -> [B, D, h, w] for ViTs
    kind: str  # "conv" or "vit"
    where: str  # the module path, for reports


def cam_layer(visual) -> CamLayer:
    """The layer Grad-CAM reads for ``visual`` (an open_clip image tower)."""
    name = type(visual).__name__
    if hasattr(visual, "transformer") and hasattr(visual, "grid_size"):  # open_clip VisionTransformer
        block = visual.transformer.resblocks[-1]
        prefix = 1 if getattr(visual, "class_embedding", None) is not None else 0
        return CamLayer(block.ln_1, _token_reshape(tuple(visual.grid_size), prefix), "vit", "visual.transformer.resblocks[-1].ln_1")
    if hasattr(visual, "layer4") and hasattr(visual, "attnpool"):  # open_clip ModifiedResNet
        return CamLayer(visual.layer4, None, "conv", "visual.layer4")
    trunk = getattr(visual, "trunk", None)  # open_clip TimmModel
    if trunk is not None:
        if hasattr(trunk, "blocks") and hasattr(trunk, "patch_embed"):
            grid = tuple(trunk.patch_embed.grid_size)
            prefix = int(getattr(trunk, "num_prefix_tokens", 1))
            return CamLayer(trunk.blocks[-1].norm1, _token_reshape(grid, prefix), "vit", "visual.trunk.blocks[-1].norm1")
        info = getattr(trunk, "feature_info", None)
        if info is not None and len(info):
            module_name = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
            layer = trunk.get_submodule(module_name)
            # Swin, MambaOut and other channels-last trunks give [B, H, W, C] stage outputs.
            reshape = _channels_first if getattr(trunk, "output_fmt", "NCHW") == "NHWC" else None
            return CamLayer(layer, reshape, "conv", f"visual.trunk.{module_name}")
    raise UnsupportedTowerError(
        f"--explain: the image tower {name} is not supported (Grad-CAM needs an open_clip ViT or ModifiedResNet, "
        "or a timm ViT or CNN)"
    )


def _channels_first(activations):
    return activations.permute(0, 3, 1, 2)


def _token_reshape(grid: tuple[int, int], prefix: int) -> Callable:
    n_tokens = prefix + grid[0] * grid[1]

    def reshape(tokens):
        if tokens.shape[1] != n_tokens and tokens.shape[0] == n_tokens:  # sequence-first layout
            tokens = tokens.transpose(0, 1)
        patches = tokens[:, prefix:, :]
        return patches.reshape(tokens.shape[0], grid[0], grid[1], tokens.shape[-1]).permute(0, 3, 1, 2)

    return reshape


def _tower_name(visual) -> str:
    trunk = getattr(visual, "trunk", None)
    return f"{type(visual).__name__} ({type(trunk).__name__})" if trunk is not None else type(visual).__name__


def _check_map(target: CamLayer, outputs: list, tower: str) -> None:
    """Grad-CAM needs a ``[B, C, h, w]`` map at the layer; a token sequence (LeViT, hybrid stages)
    would fail deep inside the package or weight the wrong axis."""
    out = outputs[0] if outputs else None
    if isinstance(out, (tuple, list)):
        out = out[0] if out else None
    shape = tuple(getattr(out, "shape", ()))
    if target.reshape is not None and len(shape) in (3, 4):
        shape = tuple(target.reshape(out).shape)
    if len(shape) != 4:
        raise UnsupportedTowerError(
            f"--explain: the image tower {tower} is not supported: {target.where} gives an output of shape "
            f"{list(shape)}, not a [batch, channels, height, width] map Grad-CAM can weight",
            hint="explain supports open_clip ViTs and ModifiedResNets, timm ViTs and timm CNNs with spatial stages",
        )


class _SimilarityTarget:
    """Grad-CAM target: cosine of the (normalised) image embedding with one text embedding."""

    def __init__(self, text_feature):
        self.text_feature = text_feature

    def __call__(self, image_embedding):
        return (image_embedding * self.text_feature.to(image_embedding.device)).sum()


def _image_tower(model):
    import torch
    import torch.nn.functional as F

    class ImageTower(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, pixels):
            return F.normalize(self.module.encode_image(pixels).float(), dim=-1)

    return ImageTower(model.module)


def explain_pixels(model, pixels: np.ndarray, labels: Sequence[str], templates: Sequence[str]) -> list[Explanation]:
    """One Grad-CAM map per label for one preprocessed uint8 image ``[H, W, 3]``."""
    import torch
    from pytorch_grad_cam import GradCAM

    from medclip_cli.data.preprocess import normalize_batch
    from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier, zero_shot_probabilities

    target = cam_layer(model.module.visual)
    model.module.eval()
    classifier = build_zero_shot_classifier(model, labels, templates)  # [D, n_labels], normalised
    batch = normalize_batch(pixels[None], model.preprocess, device=model.device)
    seen: list = []
    hook = target.layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        with torch.no_grad():
            image = model.encode_images(batch)
            similarity = (image.float() @ classifier.to(image.device).float())[0]
            probs = zero_shot_probabilities(image, classifier, model.logit_scale)[0]
    finally:
        hook.remove()
    _check_map(target, seen, _tower_name(model.module.visual))
    tower = _image_tower(model)
    explanations = []
    with GradCAM(model=tower, target_layers=[target.layer], reshape_transform=target.reshape) as cam:
        for j, label in enumerate(labels):
            with torch.enable_grad():
                grayscale = cam(input_tensor=batch, targets=[_SimilarityTarget(classifier[:, j].detach())])[0]
            explanations.append(Explanation(label, float(probs[j]), float(similarity[j]), grayscale.astype(np.float32)))
    return explanations


def explain_image(model, path: str | Path, labels: Sequence[str], templates: Sequence[str], *, window=None):
    """``(pixels, explanations)``: the preprocessed image as the model saw it and a map per label."""
    from medclip_cli.data.images import load_image
    from medclip_cli.data.preprocess import resize_to_uint8

    pixels = resize_to_uint8(load_image(path, window=window), model.preprocess)
    return pixels, explain_pixels(model, pixels, labels, templates)


def save_explanations(pixels: np.ndarray, explanations: Sequence[Explanation], out_dir: Path, stem: str) -> list[Path]:
    """Per label: ``<stem>_<label>.png`` (image, map overlay, colour bar) and ``<stem>_<label>.npy``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from medclip_cli.evaluation.outputs import unique_names

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    names = unique_names([e.label for e in explanations])  # labels that reduce to one file name stay apart
    for e in explanations:
        base = out_dir / f"{stem}_{names[e.label]}"
        with atomic_open(base.with_suffix(".npy")) as fh:
            np.save(fh, e.cam)
        written.append(base.with_suffix(".npy"))
        figure = Figure(figsize=(5.2, 4.4))
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.imshow(pixels)
        overlay = axes.imshow(e.cam, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, extent=(-0.5, pixels.shape[1] - 0.5, pixels.shape[0] - 0.5, -0.5))
        figure.colorbar(overlay, ax=axes, fraction=0.046, pad=0.04, label="Grad-CAM (image–text similarity)")
        axes.set_title(f"{e.label}: p={e.probability:.3f}, cos={e.similarity:.3f}", fontsize=10)
        axes.axis("off")
        figure.tight_layout()
        written.append(save_png(figure, base.with_suffix(".png")))
    return written


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (scipy), 1.0 for two constant maps that are equal."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    rho = spearmanr(a, b).statistic
    return float(rho) if not math.isnan(rho) else 0.0
