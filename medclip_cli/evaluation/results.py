"""What an evaluation returns: per task, per model, and the whole run, each with its JSON form
(``results.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskResult:
    task: str
    kind: str  # "classification" or "retrieval"
    metrics: dict
    n_images: int
    n_excluded: int  # embedded images without a usable label (or caption) for this task
    classes: list[str] = field(default_factory=list)  # raw values, the order of score columns
    class_names: list[str] = field(default_factory=list)  # readable names put into the prompts
    prompts: list[list[str]] = field(default_factory=list)  # the filled prompts of each class
    rows: list[dict] = field(default_factory=list)  # one per image, for predictions_<task>.csv
    # Per-image arrays the statistics are computed from: ids, y_true, scores, logits
    # (classification); ids, captions, rank_i2t, rank_t2i (retrieval).
    arrays: dict = field(default_factory=dict, repr=False)
    intervals: dict = field(default_factory=dict)  # metric -> uncertainty.Interval
    calibration: dict | None = None  # see calibration.calibrate_task

    def to_json(self) -> dict:
        out = {"kind": self.kind, "n_images": self.n_images, "n_excluded": self.n_excluded, "metrics": self.metrics}
        if self.intervals:
            out["intervals"] = {name: iv.to_json() for name, iv in self.intervals.items()}
        if self.calibration is not None:
            out["calibration"] = {k: v for k, v in self.calibration.items() if not k.startswith("_")}
        if self.kind == "classification":
            out["classes"] = self.classes
            out["class_names"] = self.class_names
            out["prompts"] = dict(zip(self.classes, self.prompts))
        return out


@dataclass
class ModelResult:
    label: str
    manifest: dict
    model_key: str
    logit_scale: float
    embeddings_from_cache: bool
    embed_seconds: float
    n_embedded: int
    skipped_images: list[tuple[str, str]]
    tasks: dict[str, TaskResult]
    weights: str = ""  # where the weights came from: a tag, a file and its sha256, or random init
    # How this model saw the data: its own preprocessing, context length and scoring.
    inputs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "weights": self.weights,
            "manifest": self.manifest,
            "model_key": self.model_key,
            "logit_scale": self.logit_scale,
            "inputs": self.inputs,
            "image_embeddings": {
                "from_cache": self.embeddings_from_cache,
                "seconds": round(self.embed_seconds, 3),
                "n_images": self.n_embedded,
                "skipped": [{"id": i, "reason": r} for i, r in self.skipped_images],
            },
            "tasks": {name: t.to_json() for name, t in self.tasks.items()},
        }


@dataclass
class EvalResult:
    models: list[ModelResult]
    dataset: dict
    prompts: dict
    config: dict
    versions: dict
    seconds: float
    comparisons: list[dict] = field(default_factory=list)  # paired, each model against the first

    @property
    def tasks(self) -> list[str]:
        return list(self.models[0].tasks) if self.models else []

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "tasks": self.tasks,
            "seed": self.config["seed"],
            "config": self.config,
            "prompt_set": self.prompts,
            "versions": self.versions,
            "seconds": round(self.seconds, 3),
            "models": [m.to_json() for m in self.models],
            "comparisons": self.comparisons,
        }
