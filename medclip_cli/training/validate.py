"""Validation during fine-tuning: loss, retrieval recall, zero-shot accuracy and (with
``val_findings``) multi-label findings AUROC of one epoch."""

from __future__ import annotations

import torch
import torch.nn as nn

from medclip_cli.training.batches import PairSet
from medclip_cli.runtime.forward import encode_image_pooled, encode_text_trimmed
from medclip_cli.runtime.kernels import autocast
from medclip_cli.training.config import TrainConfig


@torch.no_grad()
def pair_features(module: nn.Module, data: PairSet, preprocess, device, precision: str, batch: int, progress, stage: str):
    from medclip_cli.data.preprocess import normalize_batch

    images, texts = [], []
    task = progress.task(stage, total=len(data))
    for start in range(0, len(data), batch):
        pix = normalize_batch(data.pixel_batch(start, start + batch), preprocess, device)
        with autocast(precision, device):
            images.append(encode_image_pooled(module, pix).float())
            texts.append(encode_text_trimmed(module, data.tokens[start : start + batch].to(device).long()).float())
        progress.advance(task, min(batch, len(data) - start))
    progress.done(task)
    return torch.cat(images), torch.cat(texts)


@torch.no_grad()
def validate(model, data: PairSet, dataset, cfg: TrainConfig, device, precision: str, batch: int, progress=None) -> dict:
    """Validation loss, retrieval recall both ways and zero-shot accuracy on ``cfg.val_tasks``."""
    from medclip_cli.progress import NullProgress
    import torch.nn.functional as F

    from medclip_cli.training.loss import weighted_clip_loss
    from medclip_cli.training.sigmoid_loss import sigmoid_pair_loss
    from medclip_cli.evaluation.retrieval import caption_groups, retrieval_metrics
    from medclip_cli.evaluation.zeroshot import DEFAULT_TEMPLATE, build_zero_shot_classifier, zero_shot_logits

    module = model.module
    was_training = module.training
    module.eval()
    try:
        stage = f"validating on {dataset.split} ({len(data)} pairs)"
        image_f, text_f = pair_features(module, data, model.preprocess, device, precision, batch, progress or NullProgress(), stage)
        scale = module.logit_scale.detach()
        total = 0.0
        for start in range(0, len(data), batch):
            n = min(batch, len(data) - start)
            groups = data.groups[start : start + n].to(device) if data.groups is not None else None
            images, texts = image_f[start : start + n], text_f[start : start + n]
            if getattr(module, "logit_bias", None) is not None:  # SigLIP: the loss it trains with
                loss = sigmoid_pair_loss(images, texts, scale, module.logit_bias.detach(), groups)
            else:
                loss = weighted_clip_loss(images, texts, scale, cfg.loss_weight, groups)
            total += n * float(loss)
        record = {"val_loss": total / max(1, len(data))}
        image_n, text_n = F.normalize(image_f, dim=-1), F.normalize(text_f, dim=-1)
        unique, owner = caption_groups(data.captions)
        first = {}
        for i, o in enumerate(owner):
            first.setdefault(o, i)
        record.update(retrieval_metrics(image_n, text_n[[first[o] for o in range(len(unique))]], owner))
        for task in cfg.val_tasks:
            label_field = dataset.label_field(task)
            rows = [i for i, labels in enumerate(data.labels) if labels.get(task) in label_field.classes]
            classes = list(label_field.classes)
            # Fewer than two classes present: every answer is right, so accuracy says nothing
            # (it would score 1.0 and choose best/); it is left undefined and never selects.
            if len({data.labels[i][task] for i in rows}) < 2 or len(classes) < 2:
                record[f"zeroshot_{task}_acc"] = float("nan")
                continue
            classifier = build_zero_shot_classifier(
                model, [label_field.readable_name(c) for c in classes], [DEFAULT_TEMPLATE]
            )
            logits = zero_shot_logits(image_n[rows], classifier, model.logit_scale)
            truth = torch.tensor([classes.index(data.labels[i][task]) for i in rows], device=logits.device)
            record[f"zeroshot_{task}_acc"] = float((logits.argmax(dim=1) == truth).float().mean())
        if cfg.val_findings:
            from medclip_cli.training.findings_validation import findings_record

            record.update(findings_record(model, image_n, data, dataset, cfg))
    finally:
        module.train(was_training)
    return record
