"""The batch threads: what they hand the step, and that they leave torch alone.

A torch kernel run in one of the batch threads slows the training step in the main thread by a
third or more (``benchmarks/batch_threads.py`` measures it); the threads gather with NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from medclip_cli.training.batches import Batches, PairSet, _gather
from medclip_cli.training.config import TrainConfig

# Views, wrapping NumPy arrays, the seeded draws of the label text (a serial kernel) and
# allocation: none of them is a TensorIterator kernel.
ALLOWED = {"aten.slice.Tensor", "aten.alias.default", "aten.detach.default", "aten.lift_fresh.default",
           "aten.rand.generator", "aten.uniform_.default", "aten.empty.memory_format"}  # fmt: skip


class _OneProcess:
    rank, world_size = 0, 1


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(str(func))
        return func(*args, **(kwargs or {}))


def _pairs(n: int = 40) -> PairSet:
    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(rng.integers(1, 100, (n, 12)))
    pairs = PairSet(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), tokens, [f"c{k}" for k in range(n)],
                    [{} for _ in range(n)], torch.arange(n) % 7, 0)  # fmt: skip
    pairs.label_tokens = torch.from_numpy(rng.integers(1, 100, (5, 12)))
    pairs.label_choices = [[k % 5, (k + 2) % 5] for k in range(n)]
    pairs.label_groups = torch.arange(5) + 7
    return pairs


def _batches(pairs: PairSet, tmp_path, **config) -> Batches:
    cfg = TrainConfig(output=tmp_path, data=tmp_path, batch_size=16, soft_targets=True, **config)
    return Batches(pairs, cfg, torch.device("cpu"), _OneProcess(), [(0, 0, 2), (1, 0, 2)])


@pytest.mark.parametrize("config", [{}, {"label_text_fields": ["x"], "label_text_prob": 0.5, "augment": True}])
def test_a_batch_is_made_without_a_torch_kernel(tmp_path, config):
    batches = _batches(_pairs(), tmp_path, workers=0, **config)
    jobs = list(batches._jobs())  # the epoch orders are drawn in the main thread
    with _Ops() as ops:
        made = [batches._make(*job) for job in jobs]
    assert len(made) == 4
    assert ops.seen <= ALLOWED, sorted(ops.seen - ALLOWED)


def test_threads_hand_over_the_same_batches_as_the_main_thread(tmp_path):
    pairs = _pairs()
    config = {"label_text_fields": ["x"], "label_text_prob": 0.5}
    inline = list(_batches(pairs, tmp_path, workers=0, **config))
    threaded = list(_batches(pairs, tmp_path, workers=3, **config))
    assert len(inline) == len(threaded) == 4
    for (p0, t0, g0, _), (p1, t1, g1, _) in zip(inline, threaded):
        assert torch.equal(p0, p1) and torch.equal(t0, t1) and torch.equal(g0, g1)
    # What a batch holds: the pairs of the epoch's order, some captions swapped for label prompts.
    order = _batches(pairs, tmp_path).order_of(0)[:16]
    pixels, tokens, groups, _ = inline[0]
    assert torch.equal(pixels, torch.from_numpy(pairs.pixels)[order])
    swapped = [not torch.equal(tokens[r], pairs.tokens[i]) for r, i in enumerate(order.tolist())]
    assert 0 < sum(swapped) < 16
    for r, i in enumerate(order.tolist()):
        if swapped[r]:
            rows = [k for k in pairs.label_choices[i] if torch.equal(tokens[r], pairs.label_tokens[k])]
            assert rows and int(groups[r]) == int(pairs.label_groups[rows[0]])
        else:
            assert int(groups[r]) == int(pairs.groups[i])
    assert torch.equal(pairs.tokens, _pairs().tokens)  # the data set itself is never written to


def test_segments_of_one_epoch_share_its_order(tmp_path):
    """Several segments of an epoch (a resume, the scale benchmark's spread steps) draw its
    permutation once and hand out the micro-batches of that one order."""
    pairs = _pairs()
    cfg = TrainConfig(output=tmp_path, data=tmp_path, batch_size=8, workers=0)
    spread = Batches(pairs, cfg, torch.device("cpu"), _OneProcess(), [(0, 0, 1), (0, 3, 1), (0, 1, 1), (1, 2, 1)])
    calls = []
    draw = spread.order_of
    spread.order_of = lambda epoch: calls.append(epoch) or draw(epoch)
    got = [pixels for pixels, *_ in spread]
    assert calls == [0, 1]
    for pixels, (epoch, micro) in zip(got, [(0, 0), (0, 3), (0, 1), (1, 2)]):
        rows = draw(epoch)[micro * 8 : (micro + 1) * 8]
        assert torch.equal(pixels, torch.from_numpy(pairs.pixels)[rows])


def test_gather_matches_fancy_indexing_on_a_memory_map(tmp_path):
    source = np.lib.format.open_memmap(tmp_path / "pixels.npy", mode="w+", dtype=np.uint8, shape=(10, 4, 4, 3))
    source[:] = np.arange(source.size, dtype=np.uint64).reshape(source.shape) % 251
    idx = np.array([7, 0, 7, 3])
    assert torch.equal(_gather(source, idx, pin=False), torch.from_numpy(np.asarray(source)[idx]))
