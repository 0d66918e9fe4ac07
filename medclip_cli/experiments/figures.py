"""The report's training-curve picture: loss per epoch and, with a validation split, the
validation losses and metrics, one line per seed."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.atomic import save_png

#: Validation figures drawn on the 0–1 panel (ranks and losses have their own scales).
_UNIT_METRICS = ("_acc", "R@1", "R@5")


def save_training_curves_png(histories: dict[int, list[dict]], path: str | Path, title: str = "") -> Path:
    """``histories`` maps a seed to its training records (``TrainResult.history``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = {seed: [r for r in records if r.get("type") == "epoch"] for seed, records in histories.items()}
    metric_names = sorted(
        {k for records in epochs.values() for r in records for k, v in r.items() if isinstance(v, float) and k.endswith(_UNIT_METRICS)}
    )
    panels = 2 if metric_names else 1
    figure = Figure(figsize=(6 * panels, 4.2))
    FigureCanvasAgg(figure)
    loss_axes = figure.add_subplot(1, panels, 1)
    for seed, records in epochs.items():
        x = [r["epoch"] for r in records]
        loss_axes.plot(x, [r["train_loss"] for r in records], marker=".", label=f"train loss, seed {seed}")
        if any("val_loss" in r for r in records):
            loss_axes.plot(x, [r.get("val_loss") for r in records], linestyle="--", label=f"validation loss, seed {seed}")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("loss")
    loss_axes.legend(fontsize="small")
    if metric_names:
        axes = figure.add_subplot(1, panels, 2)
        for seed, records in epochs.items():
            x = [r["epoch"] for r in records]
            for name in metric_names:
                axes.plot(x, [r.get(name) for r in records], marker=".", label=f"{name}, seed {seed}")
        axes.set_ylim(0, 1)
        axes.set_xlabel("epoch")
        axes.set_ylabel("validation metric")
        axes.legend(fontsize="x-small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_png(figure, path)
