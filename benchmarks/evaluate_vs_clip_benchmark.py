"""Wall time of one `medclip evaluate` (3 label tasks + retrieval) versus CLIP_benchmark running
the same tasks, on the same split, with the same architecture, class names and template.

CLIP_benchmark has no generic labelled data set: each zero-shot task becomes an image-folder copy
(`ROOT/val/<class>/`, read as `imagenet1k-unverified`) with custom class-name and template JSON
files, and retrieval becomes a Flickr-style folder with an annotation file (`flickr8k`). Each
task is one `clip_benchmark eval` run, as a user would do it; each reloads the model and decodes
and embeds every image again. medclip is one `medclip evaluate` process with a cold embedding
cache. Both sides run fp32 on the CPU (CLIP_benchmark with --no_amp) by default; pretrained
weights cannot be downloaded here, so both use random-init ViT-B/32 (medclip `--pretrained none`,
CLIP_benchmark `--pretrained ''`).

    python benchmarks/evaluate_vs_clip_benchmark.py --data ../shared/medpix2 --split dev
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABEL_TASKS = ["modality", "location_category", "plane"]
TEMPLATE = "Medical image of {}"
OPEN_CLIP_NAMES = {"vit-b-32": "ViT-B-32", "vit-b-16": "ViT-B-16", "rn50": "RN50", "rn101": "RN101"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "medpix2")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--encoder", default="vit-b-32", choices=sorted(OPEN_CLIP_NAMES))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cb-amp", action="store_true", help="let CLIP_benchmark use autocast (its default)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two sides this many times; medians are compared")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from medclip_cli.data import load_dataset

    dataset = load_dataset(args.data, args.split)
    work = Path(tempfile.mkdtemp(prefix="medclip-vs-cb-"))
    try:
        cb_runs = _clip_benchmark_inputs(dataset, work)
        medclip_times, cb_times, medclip_cpu, cb_cpu = [], [], [], []
        for round_ in range(args.rounds):
            # a cold embedding cache every round: medclip embeds the images, as on a first run
            shutil.rmtree(work / "medclip_home", ignore_errors=True)
            before = _children_cpu()
            medclip_seconds, medclip_result = _run_medclip(args, work)
            middle = _children_cpu()
            cb_seconds, cb_results = _run_clip_benchmark(args, work, cb_runs)
            medclip_cpu.append(middle - before)
            cb_cpu.append(_children_cpu() - middle)
            medclip_times.append(medclip_seconds)
            cb_times.append(sum(cb_seconds.values()))
            detail = "  ".join(f"{k} {v:.1f}" for k, v in cb_seconds.items())
            print(f"round {round_ + 1}: medclip {medclip_seconds:.1f} s (CPU {medclip_cpu[-1]:.1f} s) | clip_benchmark "
                  f"{cb_times[-1]:.1f} s (CPU {cb_cpu[-1]:.1f} s; {detail}) | load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    medclip_seconds, total = statistics.median(medclip_times), statistics.median(cb_times)
    print(f"data: {args.data} split {args.split} ({len(dataset)} images), encoder {args.encoder} random init, "
          f"device {args.device}, {os.cpu_count()} CPUs, {args.rounds} round(s), medians")
    print(f"medclip evaluate (3 label tasks + retrieval, one process): {medclip_seconds:8.1f} s")
    print(f"clip_benchmark eval (same 4 tasks, {len(cb_runs)} runs):           {total:8.1f} s")
    print(f"ratio (clip_benchmark / medclip): {total / medclip_seconds:.2f}x wall time")
    cpu_mine, cpu_theirs = statistics.median(medclip_cpu), statistics.median(cb_cpu)
    print(f"CPU time (user + system, all processes): medclip {cpu_mine:.1f} s, clip_benchmark {cpu_theirs:.1f} s, "
          f"ratio {cpu_theirs / cpu_mine:.2f}x (less sensitive to other load on a shared machine)")
    _print_metrics(medclip_result, cb_results)
    return 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _clip_benchmark_inputs(dataset, work: Path) -> dict[str, list[str]]:
    """Image-folder copies, class-name/template files and a retrieval annotation file."""
    runs = {}
    for task in LABEL_TASKS:
        field = dataset.label_fields[task]
        classes = list(field.classes)
        root = work / f"cb_{task}"
        for i, cls in enumerate(classes):  # folder names sort in class order
            (root / "val" / f"c{i:02d}").mkdir(parents=True)
        for sample in dataset.samples:
            value = sample.labels.get(task)
            if value in classes:
                shutil.copy(sample.image, root / "val" / f"c{classes.index(value):02d}" / sample.image.name)
        names = work / f"classnames_{task}.json"
        names.write_text(json.dumps({"imagenet1k-unverified": [field.readable_name(c) for c in classes]}))
        templates = work / f"templates_{task}.json"
        templates.write_text(json.dumps({"imagenet1k-unverified": [TEMPLATE.replace("{}", "{c}")]}))
        runs[task] = [
            "--dataset", "imagenet1k-unverified", "--dataset_root", str(root), "--split", "test",
            "--task", "zeroshot_classification",
            "--custom_classname_file", str(names), "--custom_template_file", str(templates),
        ]
    root = work / "cb_retrieval"
    root.mkdir()
    lines = ["image,caption"]
    for sample in dataset.samples:
        if sample.caption:
            # the Flickr reader splits each line at ".jpg,"; PIL reads the PNG whatever the name
            shutil.copy(sample.image, root / f"{sample.id}.jpg")
            lines.append(f"{sample.id}.jpg,{' '.join(sample.caption.split())}")
    annotations = work / "captions.txt"
    annotations.write_text("\n".join(lines) + "\n")
    runs["retrieval"] = [
        "--dataset", "flickr8k", "--dataset_root", str(root), "--split", "test",
        "--task", "zeroshot_retrieval", "--annotation_file", str(annotations), "--recall_k", "1", "5", "10",
    ]
    return runs


def _run_medclip(args, work: Path) -> tuple[float, dict]:
    env = {**os.environ, "MEDCLIP_HOME": str(work / "medclip_home"), "PYTHONPATH": str(REPO)}
    tasks = [a for t in [*LABEL_TASKS, "retrieval"] for a in ("--task", t)]
    command = [
        sys.executable, "-m", "medclip_cli.cli", "evaluate", "--data", str(args.data), "--split", args.split,
        *tasks, "--encoder", args.encoder, "--pretrained", "none", "--device", args.device,
        "--batch-size", str(args.batch_size), "--output", str(work / "medclip_out"), "--json",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"medclip evaluate failed:\n{proc.stderr}")
    return seconds, json.loads(proc.stdout)


def _run_clip_benchmark(args, work: Path, runs: dict[str, list[str]]) -> tuple[dict[str, float], dict[str, dict]]:
    cli = shutil.which("clip_benchmark", path=str(Path(sys.executable).parent)) or "clip_benchmark"
    env = {**os.environ}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # clip_benchmark picks CUDA whenever it sees one
    seconds, results = {}, {}
    for name, task_args in runs.items():
        output = work / f"cb_{name}.json"
        command = [
            cli, "eval", "--model", OPEN_CLIP_NAMES[args.encoder], "--pretrained", "",
            "--batch_size", str(args.batch_size), "--output", str(output), "--quiet", *task_args,
        ]
        if not args.cb_amp:
            command.append("--no_amp")
        start = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
        seconds[name] = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"clip_benchmark eval ({name}) failed:\n{proc.stderr[-3000:]}")
        results[name] = json.loads(output.read_text())["metrics"]
    return seconds, results


def _print_metrics(medclip: dict, cb: dict[str, dict]) -> None:
    tasks = medclip["models"][0]["tasks"]
    # Both sides seed torch with 0 before building the model, so the random-init weights are the
    # same: classification agrees; retrieval differs where several images share a caption
    # (CLIP_benchmark repeats the caption per image and counts the other images as misses).
    print("\nmetrics (same seed-0 random-init weights on both sides)")
    for task in LABEL_TASKS:
        m, c = tasks[task]["metrics"], cb[task]
        print(f"  {task:<18} medclip acc1 {m['accuracy@1']:.4f} bal.acc {m['balanced_accuracy']:.4f}"
              f" | clip_benchmark acc1 {c['acc1']:.4f} mean_per_class_recall {c['mean_per_class_recall']:.4f}")
    m, c = tasks["retrieval"]["metrics"], cb["retrieval"]
    print(f"  {'retrieval':<18} medclip i2t R@5 {m['image_to_text_R@5']:.4f} t2i R@5 {m['text_to_image_R@5']:.4f}"
          f" | clip_benchmark text_retrieval R@5 {c['text_retrieval_recall@5']:.4f}"
          f" image_retrieval R@5 {c['image_retrieval_recall@5']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
