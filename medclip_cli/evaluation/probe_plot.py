"""The probe's learning curve: a metric against shots per class, one line per model, with each
model's zero-shot figure as a dashed horizontal line of the same colour."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.atomic import save_png


def save_learning_curve(task: dict, name: str, path: str | Path, metric: str = "accuracy@1") -> Path:
    """``task``: one task of ``ProbeResult.to_json()["tasks"]``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shots = list(task["models"][0]["summary"])
    xs = list(range(len(shots)))
    labels = [f"all ({task['n_train']})" if s == "all" else s for s in shots]
    colours = [f"C{i % 10}" for i in range(len(task["models"]))]
    for model, colour in zip(task["models"], colours):
        means = [model["summary"][s][metric]["mean"] for s in shots]
        sds = [model["summary"][s][metric]["sd"] or 0.0 for s in shots]
        axes.errorbar(xs, means, yerr=sds, marker="o", capsize=3, color=colour, label=f"{model['label']} probe")
        zero_shot = (model.get("zero_shot") or {}).get(metric)
        if zero_shot is not None:
            axes.axhline(zero_shot, linestyle="--", color=colour, label=f"{model['label']} zero-shot")
    axes.set_xticks(xs, labels=labels)
    axes.set_xlabel("training images per class (k)")
    axes.set_ylabel(f"{metric} (mean ± sd over repeats)")
    axes.set_ylim(0.0, 1.02)
    axes.set_title(f"{name}: {len(task['classes'])} classes, {task['n_eval']} evaluation images")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    return save_png(figure, path)
