"""Parity with CLIP_benchmark: same model, images, class names and templates give the same numbers.

CLIP_benchmark's own functions are driven on a DataLoader over the very tensors medclip feeds
its model (decoded and normalised once), with the same open_clip module and tokenizer.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

zeroshot_classification = pytest.importorskip("clip_benchmark.metrics.zeroshot_classification")
zeroshot_retrieval = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")

from medclip_cli.data import load_dataset  # noqa: E402
from medclip_cli.data.pixels import load_pixels  # noqa: E402
from medclip_cli.data.preprocess import normalize_batch  # noqa: E402
from medclip_cli.evaluation.evaluate import EvalConfig, ModelSource, evaluate  # noqa: E402
from medclip_cli.models import resolve_model  # noqa: E402

TASKS = ["modality", "location_category", "plane"]


class _Tensors(torch.utils.data.Dataset):
    def __init__(self, images, targets, classes=None):
        self.images, self.targets, self.classes = images, targets, classes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def _image_captions_collate(batch):
    # clip_benchmark.datasets.builder.image_captions_collate_fn (that module needs `requests`)
    images, texts = zip(*batch)
    return torch.stack(images), texts


def _model():
    return resolve_model(None, "test-vit", None, "none")


@pytest.fixture
def dev(medpix_root):
    dataset = load_dataset(medpix_root, "dev")
    torch.manual_seed(0)  # the model evaluate() builds with seed 0
    model = _model()
    pixels = load_pixels(dataset, model.preprocess)
    images = normalize_batch(pixels.array, model.preprocess)
    return dataset, model, pixels.indices, images


def test_zero_shot_classification_matches_clip_benchmark(dev):
    dataset, model, indices, images = dev
    ours = evaluate([ModelSource("m", _model)], dataset, EvalConfig(tasks=TASKS, device="cpu")).models[0]
    for task in TASKS:
        field = dataset.label_fields[task]
        classes = list(field.classes)
        keep = [p for p, i in enumerate(indices) if dataset.samples[i].labels.get(task) in classes]
        targets = torch.tensor([classes.index(dataset.samples[indices[p]].labels[task]) for p in keep])
        names = [field.readable_name(c) for c in classes]
        loader = torch.utils.data.DataLoader(_Tensors(images[keep], targets, names), batch_size=64)
        theirs = zeroshot_classification.evaluate(
            model.module, loader, model.tokenizer, names, ["Medical image of {c}"], device="cpu", amp=False
        )
        mine = ours.tasks[task].metrics
        if task == "modality":  # a model that predicts more than one class, so agreement means something
            assert len({row["predicted"] for row in ours.tasks[task].rows}) > 1
        assert mine["n_images"] == len(keep)
        assert mine["accuracy@1"] == pytest.approx(theirs["acc1"], abs=1e-12), task
        assert mine["balanced_accuracy"] == pytest.approx(theirs["mean_per_class_recall"], abs=1e-12), task
        if len(classes) > 5:
            assert mine["accuracy@5"] == pytest.approx(theirs["acc5"], abs=1e-12), task
        else:  # CLIP_benchmark reports 1.0 with exactly 5 classes (every class is in the top 5)
            assert mine["accuracy@5"] is None and (math.isnan(theirs["acc5"]) or theirs["acc5"] == 1.0)


def test_retrieval_recall_matches_clip_benchmark_where_captions_are_unique(dev):
    # CLIP_benchmark repeats a caption shared by several images once per image and counts the
    # other images as misses; medclip counts any image with the caption as a hit. Where every
    # caption is unique the two definitions coincide, so parity is checked there.
    dataset, model, indices, images = dev
    captions = [dataset.samples[i].caption for i in indices]
    keep = [p for p, c in enumerate(captions) if captions.count(c) == 1]
    assert len(keep) > 100
    subset = dataclasses.replace(dataset, samples=[dataset.samples[indices[p]] for p in keep])
    ks = (1, 5, 10)
    mine = evaluate([ModelSource("m", _model)], subset, EvalConfig(tasks=["retrieval"], device="cpu", ks=ks))
    mine = mine.models[0].tasks["retrieval"].metrics
    pairs = _Tensors(images[keep], [[captions[p]] for p in keep])
    loader = torch.utils.data.DataLoader(pairs, batch_size=64, collate_fn=_image_captions_collate)
    theirs = zeroshot_retrieval.evaluate(model.module, loader, model.tokenizer, device="cpu", amp=False, recall_k_list=list(ks))
    for k in ks:
        # CLIP_benchmark's "image retrieval" is text→image; its "text retrieval" is image→text.
        assert mine[f"text_to_image_R@{k}"] == pytest.approx(theirs[f"image_retrieval_recall@{k}"], abs=1e-12), k
        assert mine[f"image_to_text_R@{k}"] == pytest.approx(theirs[f"text_retrieval_recall@{k}"], abs=1e-12), k
