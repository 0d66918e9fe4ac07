"""A fine-tuned bundle's temperature: fitted on the validation split, stored in its manifest.

One scalar T for the bundle, fitted by minimising the zero-shot NLL summed over the validation
split's label fields (``val_tasks`` when given, else every label field with 2 or more classes).
It is stored as the manifest's optional ``temperature`` key::

    "temperature": {"value": 1.7, "fitted_on": "dev", "tasks": ["modality"], "n_images": 181,
                    "prompts": "seed", "nll_before": 0.61, "nll_after": 0.42}

``classify`` divides the model's logits by it; ``evaluate`` reports the model's own scores (its
``--calibrate-on`` fits a temperature per task explicitly).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medclip_cli.atomic import write_text_atomic

MANIFEST_KEY = "temperature"


def fit_group_temperature(groups: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    """(T, NLL at T = 1, NLL at T) minimising the image-weighted NLL over several tasks' logits."""
    from scipy.optimize import minimize_scalar

    from medclip_cli.evaluation.calibration import T_BOUNDS, nll

    total = sum(len(y) for _, y in groups)

    def objective(log_t: float) -> float:
        t = float(np.exp(log_t))
        return sum(len(y) * nll(logits, y, t) for logits, y in groups) / total

    found = minimize_scalar(objective, bounds=(np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x)), objective(0.0), float(found.fun)


def store_temperature(
    bundle: Path, dataset, tasks: list[str], prompts: str | None, device: str = "auto", batch_size: int = 64, progress=None
) -> dict | None:
    """Fit the temperature of the bundle at ``bundle`` on ``dataset`` (the validation split) and
    write it into the bundle's manifest; None when the split has no label field to fit on."""
    from medclip_cli.errors import DataError
    from medclip_cli.evaluation.evaluate import RETRIEVAL, EvalConfig, ModelSource, evaluate, resolve_tasks
    from medclip_cli.models.bundle import CONFIG_NAME, load_bundle, read_bundle_config

    try:
        tasks = [t for t in (tasks or resolve_tasks(dataset, [])) if t != RETRIEVAL]
    except DataError:  # a split with neither labels nor captions: nothing to fit on
        return None
    if not tasks:
        return None
    config = EvalConfig(tasks=tasks, prompts=prompts, batch_size=batch_size, device=device, bootstrap=0)
    # A bundle, even one trained from random init, is not warned about as random weights.
    source = ModelSource(Path(bundle).name, lambda: load_bundle(bundle), bundle=bundle)
    result = evaluate([source], dataset, config, progress)
    groups = [(t.arrays["logits"], t.arrays["y_true"]) for t in result.models[0].tasks.values()]
    value, before, after = fit_group_temperature(groups)
    entry = {
        "value": value,
        "fitted_on": dataset.split,
        "tasks": tasks,
        "n_images": int(sum(len(y) for _, y in groups)),
        "prompts": result.prompts.get("name"),
        "nll_before": before,
        "nll_after": after,
    }
    manifest_file = Path(bundle) / CONFIG_NAME
    if manifest_file.is_file():
        saved = read_bundle_config(bundle)
    else:  # a transformers model saved back in its own format keeps medclip's manifest beside it
        from medclip_cli.models.hf_clip import MANIFEST_NAME

        manifest_file = Path(bundle) / MANIFEST_NAME
        saved = json.loads(manifest_file.read_text(encoding="utf-8"))
    saved.setdefault("medclip", {})[MANIFEST_KEY] = entry
    write_text_atomic(manifest_file, json.dumps(saved, indent=2))
    return entry


def bundle_temperature(manifest: dict) -> float | None:
    """The stored temperature of a model's manifest, if it has a usable one."""
    entry = manifest.get(MANIFEST_KEY)
    value = entry.get("value") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def store_run_temperatures(config, result, progress=None) -> dict[str, dict] | None:
    """After ``train(config)``: fit and store the temperature of each bundle the run kept (best
    and last) on its validation split; None without a validation split."""
    from medclip_cli.data import load_dataset

    if not config.val_split:
        return None
    dataset = load_dataset(config.data, config.val_split, config.dataset_format, **config.dataset_options)
    out = {}
    for name, bundle in (("best", result.best), ("last", result.last)):
        if bundle is not None:
            if progress is not None:
                progress.log(f"fitting the temperature of {name}/ on {config.val_split}")
            entry = store_temperature(
                Path(bundle), dataset, list(config.val_tasks), config.label_text_prompts, config.device, config.batch_size, progress
            )
            if entry is not None:
                out[name] = entry
    return out or None
