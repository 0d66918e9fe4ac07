"""Two "nodes" (two torchrun launchers, one process each, rendezvous on 127.0.0.1, gloo) train the
same weights as one process with the same global batch; each node has its own decode cache folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.training.conftest import read_jsonl
from tests.training.test_distributed import ENV, TORCHRUN, _finetune_args, _free_port


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists() and shutil.which("torchrun") is None, reason="torchrun not installed")
def test_two_nodes_match_one_process(small_medpix, tmp_path):
    from safetensors.torch import load_file

    torchrun = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    base = {**os.environ, **ENV}
    single = subprocess.run(
        [sys.executable, "-m", "medclip_cli.cli", *_finetune_args(small_medpix, tmp_path / "one", 8)],
        capture_output=True, text=True, env={**base, "MEDCLIP_HOME": str(tmp_path / "home-one")}, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    port = _free_port()
    nodes = [
        subprocess.Popen(
            [torchrun, "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
             "--master-port", str(port), "-m", "medclip_cli.cli", *_finetune_args(small_medpix, tmp_path / "two", 4)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**base, "MEDCLIP_HOME": str(tmp_path / f"home-node{rank}")},  # a per-node cache folder
        )  # fmt: skip
        for rank in (0, 1)
    ]
    try:
        outputs = [node.communicate(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    for rank in (0, 1):  # each node decoded into its own cache
        assert list((tmp_path / f"home-node{rank}" / "cache" / "pixels").glob("*/*.npy"))
    losses_one = [r["loss"] for r in read_jsonl(tmp_path / "one" / "metrics.jsonl") if r["type"] == "train"]
    losses_two = [r["loss"] for r in read_jsonl(tmp_path / "two" / "metrics.jsonl") if r["type"] == "train"]
    assert len(losses_one) == 3 and losses_one[0] != pytest.approx(losses_one[2], rel=1e-3)
    assert losses_two == pytest.approx(losses_one, rel=1e-5)
    one = load_file(str(tmp_path / "one" / "last" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "last" / "model.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=2e-6, msg=lambda m, k=key: f"{k}: {m}")
