"""A finished experiment run again: the re-run is built in ``.NAME.new`` and swapped in; afterwards
no file names the staging folder, and the final folder resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from medclip_cli.experiments.runner import OFFLINE_EXPERIMENT

TINY = [
    "data.eval_split=dev", "data.train_split=dev", "finetune.max_steps=2", "finetune.batch_size=16",
    "finetune.epochs=1", "model.image_size=32",
]  # fmt: skip


def _reproduce(data, out, *extra):
    sets = [a for item in TINY for a in ("--set", item)]
    args = ["reproduce", "--experiment", OFFLINE_EXPERIMENT, "--data", str(data), "--output", str(out), *sets, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "medclip_cli.cli", *args, "--json"], capture_output=True, text=True,
                          env=env, timeout=1200)  # fmt: skip


@pytest.mark.slow
def test_a_staged_rerun_names_only_the_final_folder_and_resumes(medpix_root, tmp_path):
    out = tmp_path / "runs"
    for attempt in ("first", "again"):
        done = _reproduce(medpix_root, out)
        assert done.returncode == 0, f"{attempt}: {done.stderr}"
    final = out / OFFLINE_EXPERIMENT
    staging = f".{OFFLINE_EXPERIMENT}.new".encode()
    files = [p for p in final.rglob("*") if p.is_file()]
    assert any(p.name == "training_state.pt" for p in files) and any(p.name == "config.json" for p in files)
    # Text, JSON and the checkpoint's state alike (torch.save stores its strings uncompressed).
    naming = [str(p.relative_to(final)) for p in files if staging in p.read_bytes()]
    assert naming == []
    assert not (out / f".{OFFLINE_EXPERIMENT}.new").exists()
    config = json.loads((final / "finetune" / "config.json").read_text(encoding="utf-8"))
    assert config["config"]["output"] == str(final / "finetune")
    before = json.loads((final / "results.json").read_text(encoding="utf-8"))["comparison"]

    # The swapped-in fine-tune resumes from its own folder (the staging one is gone).
    resumed = subprocess.run([sys.executable, "-m", "medclip_cli.cli", "finetune", "--output", str(final / "finetune"),
                              "--resume", "--json"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["output"] == str(final / "finetune")
    assert json.loads((final / "results.json").read_text(encoding="utf-8"))["comparison"] == before
