"""``reproduce --resume`` after an interruption, and ``--experiment all`` past the ones that cannot run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from medclip_cli.experiments.runner import OFFLINE_EXPERIMENT

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same arithmetic in every process
SHORT = [
    "data.eval_split=dev", "data.train_split=dev", "finetune.max_steps=24", "finetune.batch_size=32",
    "finetune.checkpoint_every=2", "finetune.epochs=4", "model.image_size=48",
]  # fmt: skip


def _args(data, out, *extra):
    sets = [a for item in SHORT for a in ("--set", item)]
    return ["reproduce", "--experiment", OFFLINE_EXPERIMENT, "--data", str(data), "--output", str(out), *sets, *extra]


def _medclip(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "medclip_cli.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **ENV}, timeout=900, **kwargs)  # fmt: skip


def _metrics(out):
    results = json.loads((out / OFFLINE_EXPERIMENT / "results.json").read_text(encoding="utf-8"))
    return results["comparison"], results["training"]


@pytest.mark.slow
def test_reproduce_resume_finishes_an_interrupted_run_with_the_same_results(medpix_root, tmp_path):
    reference = tmp_path / "reference"
    done = _medclip(*_args(medpix_root, reference))
    assert done.returncode == 0, done.stderr

    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "medclip_cli.cli", *_args(medpix_root, out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV})  # fmt: skip
    pointer = out / OFFLINE_EXPERIMENT / "finetune" / "checkpoints" / "latest"
    deadline = time.monotonic() + 600
    while not pointer.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert not (out / OFFLINE_EXPERIMENT / "results.json").exists()

    again = _medclip(*_args(medpix_root, out))
    assert again.returncode == 1 and "pass --resume to continue it" in again.stderr

    resumed = _medclip(*_args(medpix_root, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(out) == _metrics(reference)


@pytest.mark.slow
def test_experiment_all_runs_what_it_can_and_reports_the_rest(cli, medpix_root, tmp_path):
    out = tmp_path / "all"
    sets = [a for item in [*SHORT[:4], "finetune.epochs=1", "model.image_size=48"] for a in ("--set", item)]
    result = cli("reproduce", "--experiment", "all", "--data", medpix_root, "--output", out, *sets)
    assert result.exit_code == 1  # some were skipped
    assert (out / OFFLINE_EXPERIMENT / "results.json").is_file()  # the one that needs no network ran
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Not run" in summary and "| zeroshot-vit-b-32 | skipped |" in summary
    assert "not in the local cache" in summary
    from medclip_cli.experiments.network import needs_network
    from medclip_cli.experiments.config import list_experiments

    for exp in list_experiments():
        assert (f"| {exp.name} | skipped |" in summary) == needs_network(exp), exp.name
