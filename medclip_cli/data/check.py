"""``medclip data check``: what is in each split of a data set and what is wrong with it."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from medclip_cli.files import file_sha256
from medclip_cli.data.dataset import Dataset
from medclip_cli.data.images import load_image
from medclip_cli.progress import NullProgress, ProgressReporter
from medclip_cli.errors import ImageError


@dataclass
class SplitCheck:
    """The findings for one split. ``errors`` counts what makes the check fail."""

    split: str
    samples: int
    images_ok: int = 0
    captions: int = 0  # non-empty captions
    empty_captions: int = 0
    truncated_captions: int | None = None  # captions longer than the text tower's context
    longest_caption_tokens: int | None = None
    classes: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> class -> images
    unlabelled: dict[str, int] = field(default_factory=dict)  # field -> images without a class
    missing: list[str] = field(default_factory=list)  # image paths
    corrupt: list[str] = field(default_factory=list)  # one-line reasons naming the file
    duplicates: list[list[str]] = field(default_factory=list)  # sample ids with identical bytes
    problems: list[str] = field(default_factory=list)  # rows the reader skipped

    @property
    def errors(self) -> int:
        return len(self.missing) + len(self.corrupt) + len(self.problems)


@dataclass
class CheckReport:
    """Findings for every checked split of one data set."""

    path: str
    format: str
    text_encoder: str | None
    context_length: int | None
    splits: list[SplitCheck]
    shared_across_splits: list[list[str]] = field(default_factory=list)  # "split:id" with identical bytes

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.splits)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["errors"] = self.errors
        for split, check in zip(data["splits"], self.splits):
            split["errors"] = check.errors
        return data


#: Tokens in a caption for the text tower whose context length the check compares against.
TokenCounter = Callable[[str], int]


def check_dataset(
    datasets: Sequence[Dataset],
    *,
    count_tokens: TokenCounter | None = None,
    context_length: int | None = None,
    text_encoder: str | None = None,
    progress: ProgressReporter | None = None,
) -> CheckReport:
    """Check the given splits (of one data set): decode every image, count classes and captions."""
    progress = progress or NullProgress()
    checks, owners = [], defaultdict(list)
    for dataset in datasets:
        check, hashes = _check_split(dataset, progress)
        if count_tokens is not None and context_length is not None:
            lengths = [count_tokens(s.caption) for s in dataset.samples if s.caption]
            check.truncated_captions = sum(n > context_length for n in lengths)
            check.longest_caption_tokens = max(lengths, default=0)
        for digest, ids in hashes.items():
            owners[digest].append((dataset.split, ids))
        checks.append(check)
    shared = [
        [f"{split}:{ids[0]}" for split, ids in entries]
        for entries in owners.values()
        if len({s for s, _ in entries}) > 1
    ]
    first = datasets[0] if datasets else None
    return CheckReport(
        path=str(first.root) if first else "",
        format=first.format if first else "",
        text_encoder=text_encoder,
        context_length=context_length,
        splits=checks,
        shared_across_splits=shared,
    )


def _check_split(dataset: Dataset, progress: ProgressReporter) -> tuple[SplitCheck, dict[str, list[str]]]:
    check = SplitCheck(split=dataset.split, samples=len(dataset), problems=list(dataset.problems))
    by_hash: dict[str, list[str]] = defaultdict(list)
    task = progress.task(f"checking {dataset.split} images", total=len(dataset))
    for sample in dataset.samples:
        progress.advance(task)
        if not sample.image.is_file():
            check.missing.append(str(sample.image))
            continue
        try:
            load_image(sample.image)
        except ImageError as exc:
            check.corrupt.append(str(exc))
            continue
        check.images_ok += 1
        digest = file_sha256(sample.image)
        if digest is not None:
            by_hash[digest].append(sample.id)
    progress.done(task)
    check.duplicates = [ids for ids in by_hash.values() if len(ids) > 1]
    captions = [s.caption for s in dataset.samples]
    check.captions = sum(bool(c) for c in captions)
    # A format without captions (image folders) has none to be empty.
    check.empty_captions = 0 if all(c is None for c in captions) else len(captions) - check.captions
    for name, label_field in dataset.label_fields.items():
        counts = Counter(s.labels[name] for s in dataset.samples if name in s.labels)
        check.classes[name] = {c: counts[c] for c in label_field.classes if counts[c]} | {
            c: n for c, n in counts.items() if c not in label_field.classes
        }
        check.unlabelled[name] = len(dataset) - sum(counts.values())
    return check, by_hash
