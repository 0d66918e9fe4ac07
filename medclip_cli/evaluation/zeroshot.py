"""The zero-shot classifier: one implementation for classify, evaluate and validation in finetune."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from medclip_cli.errors import UsageError

#: The seed study's prompt.
DEFAULT_TEMPLATE = "Medical image of {}"
PLACEHOLDERS = ("{}", "{c}")  # {c} is CLIP_benchmark's spelling


def check_template(template: str) -> str:
    """A template must contain a ``{}`` (or ``{c}``) placeholder; nothing else is interpreted."""
    if not isinstance(template, str) or not any(p in template for p in PLACEHOLDERS):
        raise UsageError(f"prompt template {template!r} has no {{}} placeholder for the class name")
    return template


def fill_template(template: str, classname: str) -> str:
    """Put ``classname`` into every placeholder by plain substitution (never ``str.format``,
    so user text such as ``{0.__class__}`` is never evaluated)."""
    check_template(template)
    for placeholder in PLACEHOLDERS:
        template = template.replace(placeholder, classname)
    return template


def class_prompts(
    classnames: Sequence[str],
    templates: Sequence[str] | Mapping[str, Sequence[str]],
) -> list[list[str]]:
    """The prompts of each class: every template filled, or a per-class list of prompts."""
    if isinstance(templates, Mapping):
        missing = [c for c in classnames if c not in templates]
        if missing:
            raise UsageError(f"no prompts given for classes: {', '.join(missing)}")
        return [[fill_template(t, c) if any(p in t for p in PLACEHOLDERS) else t for t in templates[c]] for c in classnames]
    if not templates:
        raise UsageError("no prompt templates given")
    return [[fill_template(t, c) for t in templates] for c in classnames]


@torch.no_grad()
def build_zero_shot_classifier(
    model,
    classnames: Sequence[str],
    templates: Sequence[str] | Mapping[str, Sequence[str]] = (DEFAULT_TEMPLATE,),
) -> torch.Tensor:
    """Class weights ``[embed_dim, n_classes]``: for each class, embed every prompt,
    L2-normalise, average, and normalise again (CLIP's prompt ensembling)."""
    if not classnames:
        raise UsageError("no class labels given")
    prompts = class_prompts(classnames, templates)
    flat = [p for group in prompts for p in group]
    embeddings = model.encode_texts(flat, normalize=True)
    weights, start = [], 0
    for group in prompts:
        mean = embeddings[start : start + len(group)].mean(dim=0)
        weights.append(mean / mean.norm().clamp_min(1e-12))
        start += len(group)
    return torch.stack(weights, dim=1)


def zero_shot_logits(image_features: torch.Tensor, classifier: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Logits = logit_scale · cos(image, class) with L2-normalised image features."""
    return logit_scale * image_features.float() @ classifier.to(image_features.device).float()


def zero_shot_probabilities(
    image_features: torch.Tensor, classifier: torch.Tensor, logit_scale: float, logit_bias: float | None = None
) -> torch.Tensor:
    """The model's own class scores: CLIP's softmax over classes of its scaled cosine similarities
    (rows sum to 1); for a sigmoid model (SigLIP, ``logit_bias`` given) each class's
    ``sigmoid(scale * cos + bias)``, as transformers' zero-shot pipeline reports them (rows need not
    sum to 1; the argmax is the softmax's)."""
    logits = zero_shot_logits(image_features, classifier, logit_scale)
    if logit_bias is not None:
        return torch.sigmoid(logits + logit_bias)
    return logits.softmax(dim=-1)
