"""The weight average (``--ema-decay``): its arithmetic, and what a run saves with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from medclip_cli.training.ema import WeightAverage


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model[2].weight.requires_grad_(False)  # locked: no copy kept
    return model


def test_the_average_follows_the_warmed_up_decay_over_weights_and_batch_norm_statistics():
    model = _model()
    ema = WeightAverage(model, decay=0.99)
    assert ema.names == ["0.weight", "0.bias", "1.weight", "1.bias", "2.bias", "1.running_mean", "1.running_var"]
    expected = [t.detach().clone() for t in ema.live]
    for n in range(1, 4):
        with torch.no_grad():
            for t in ema.live:
                t.add_(1.0)
        ema.update()
        decay = min(0.99, (1 + n) / (10 + n))
        expected = [decay * e + (1 - decay) * t for e, t in zip(expected, ema.live)]
    for average, want in zip(ema.average, expected):
        torch.testing.assert_close(average, want)
    assert not torch.equal(ema.average[0], ema.live[0])


def test_applied_swaps_the_average_in_and_the_live_weights_back_even_on_error():
    model = _model()
    ema = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    ema.update()
    live = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.applied():
        torch.testing.assert_close(model[0].weight, ema.average[0])
        assert not torch.equal(model[0].weight, live["0.weight"])
    with pytest.raises(RuntimeError):
        with ema.applied():
            raise RuntimeError("validation failed")
    for k, v in model.state_dict().items():
        assert torch.equal(v, live[k]), k


def test_state_round_trip_and_a_mismatched_state_is_refused():
    model = _model()
    ema = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model[0].bias.add_(2.0)
    ema.update()
    other = WeightAverage(_model(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and all(torch.equal(a, b) for a, b in zip(other.average, ema.average))
    state = ema.state_dict()
    del state["tensors"]["0.bias"]
    with pytest.raises(ValueError, match="other weights"):
        other.load_state_dict(state)


def test_a_run_saves_the_average_and_checkpoints_both(cli, small_medpix, tmp_path):
    from safetensors.torch import load_file

    from medclip_cli.training import checkpoint as ckpt

    out = tmp_path / "run"
    result = cli(
        "finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", out, "--epochs", "1",
        "--batch-size", "16", "--val-split", "none", "--ema-decay", "0.9", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = load_file(str(out / "last" / "model.safetensors"))
    folder = ckpt.find_checkpoint(out)
    state = ckpt.load_checkpoint(folder).state
    average = state["ema"]["tensors"]
    assert state["ema"]["updates"] == 6 and "visual.conv1.weight" in average  # 96 pairs / 16
    live = load_file(str(folder / "model.safetensors"))  # the checkpoint keeps the live weights
    for name, tensor in average.items():
        torch.testing.assert_close(saved[name], tensor)  # the bundle holds the average ...
    assert any(not torch.equal(live[n], average[n]) for n in average)  # ... not the live weights


def test_ema_decay_out_of_range_is_a_usage_error(cli, small_medpix, tmp_path):
    result = cli("finetune", "--encoder", "test-vit", "--data", small_medpix, "--output", tmp_path / "r",
                 "--ema-decay", "1", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 2 and "--ema-decay must be at least 0 (off) and below 1, not 1.0" in result.output
