"""The whole evaluate pipeline on a model whose predictions we construct.

The image embeddings are put in the cache by hand: each image's feature is the classifier
column (or caption embedding) of the class (or caption) we want it to match, so every
prediction, and therefore every metric, is known before ``evaluate`` runs.
"""

from __future__ import annotations

import pytest
import torch

from medclip_cli.data import load_dataset
from medclip_cli.evaluation.embeddings import (
    ImageEmbeddings,
    embedding_cache_path,
    model_fingerprint,
    save_embeddings,
)
from medclip_cli.evaluation.evaluate import EvalConfig, ModelSource, evaluate
from medclip_cli.evaluation.prompts import load_prompt_set
from medclip_cli.evaluation.zeroshot import build_zero_shot_classifier
from medclip_cli.models import resolve_model

HEAD, THORAX, ABDOMEN, SPINE, PELVIS = "Head", "Thorax", "Abdomen", "Spine and Muscles", "Reproductive and Urinary System"
TRUE = [HEAD, HEAD, THORAX, THORAX, ABDOMEN, SPINE, SPINE, HEAD]
PREDICTED = [HEAD, THORAX, THORAX, THORAX, ABDOMEN, SPINE, PELVIS, HEAD]  # 2 mistakes; PELVIS absent from the split
CAPTIONS = ["a", "b", "c", "c", "d", "e", "f", "g"]  # images 2 and 3 share a caption


def _model():
    return resolve_model(None, "test-vit", None, "none")


@pytest.fixture
def setup(make_medpix):
    records = [
        {"image": f"MPX{i}_img{i}", "location_category": cls, "caption": f"caption {cap}"}
        for i, (cls, cap) in enumerate(zip(TRUE, CAPTIONS))
    ]
    dataset = load_dataset(make_medpix(records), "test")
    torch.manual_seed(0)  # evaluate() seeds the same way before it builds the model
    model = _model()
    return dataset, model


def _run(dataset, tasks):
    result = evaluate([ModelSource("m", _model)], dataset, EvalConfig(tasks=tasks, device="cpu"))
    model_result = result.models[0]
    assert model_result.embeddings_from_cache  # our constructed features were used
    return model_result


def _put_in_cache(model, dataset, features):
    path = embedding_cache_path(model_fingerprint(model), dataset, model.preprocess)
    save_embeddings(path, ImageEmbeddings(features, list(range(len(dataset))), []))


def test_classification_metrics_of_constructed_predictions(setup):
    dataset, model = setup
    field = dataset.label_fields["location_category"]
    classes = list(field.classes)
    weights = build_zero_shot_classifier(model, [field.readable_name(c) for c in classes], load_prompt_set().for_task("location_category", field))
    _put_in_cache(model, dataset, weights[:, [classes.index(c) for c in PREDICTED]].T.contiguous())

    task = _run(dataset, ["location_category"]).tasks["location_category"]
    m = task.metrics
    assert [row["predicted"] for row in task.rows] == PREDICTED
    assert m["accuracy@1"] == pytest.approx(6 / 8)
    assert m["accuracy@5"] is None  # 5 classes: the top 5 is every class, 1.0 by construction
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1 + 1 / 2) / 4)
    f1 = {HEAD: 0.8, THORAX: 0.8, ABDOMEN: 1.0, SPINE: 2 / 3}  # precision/recall 1,2/3 · 2/3,1 · 1,1 · 1,1/2
    assert m["macro_f1"] == pytest.approx(sum(f1.values()) / 4)
    assert m["weighted_f1"] == pytest.approx((3 * f1[HEAD] + 2 * f1[THORAX] + f1[ABDOMEN] + 2 * f1[SPINE]) / 8)
    assert m["confusion_matrix"] == [[2, 1, 0, 0, 0], [0, 2, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert m["absent_classes"] == [PELVIS]
    pelvis = m["per_class"][classes.index(PELVIS)]
    assert pelvis["support"] == 0 and pelvis["precision"] == 0.0 and pelvis["recall"] is None and pelvis["auroc"] is None
    assert task.prompts[0] == ["Medical image of head"]


def test_retrieval_metrics_of_constructed_matches(setup):
    dataset, model = setup
    unique = list(dict.fromkeys(f"caption {c}" for c in CAPTIONS))
    text = model.encode_texts(unique)
    features = text[[unique.index(f"caption {c}") for c in CAPTIONS]].clone()
    features[1] = -text[unique.index("caption b")]  # image 1 is as far from its caption as it can be
    _put_in_cache(model, dataset, features)

    m = _run(dataset, ["retrieval"]).tasks["retrieval"].metrics
    assert m["n_captions"] == 7
    # image→text ranks: 1 for every image but image 1, whose caption comes last (7th of 7)
    assert m["image_to_text_R@1"] == m["image_to_text_R@5"] == pytest.approx(7 / 8)
    assert m["image_to_text_R@10"] == 1.0
    # text→image: "caption c" is found through either of its two images; "caption b" finds image 1 last (8th of 8)
    assert m["text_to_image_R@1"] == m["text_to_image_R@5"] == pytest.approx(6 / 7)
    assert m["text_to_image_R@10"] == 1.0
    assert m["image_to_text_median_rank"] == m["text_to_image_median_rank"] == 1.0
