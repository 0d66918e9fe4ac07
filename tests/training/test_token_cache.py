"""The token cache: a second load_pairs reads the caption tokens it stored instead of tokenising."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medclip_cli.data import Dataset, Sample
from medclip_cli.models import token_cache
from medclip_cli.models.token_cache import caption_tokens, tokenizer_identity, tokens_dir
from medclip_cli.progress import NullProgress
from medclip_cli.training.batches import Batches, load_pairs
from medclip_cli.training.config import TrainConfig
from tests.data.conftest import write_png

CAPTIONS = [f"axial CT of the chest, finding {k}: a {'large ' * (k % 5)}nodule" for k in range(10)]


class _OneProcess:
    rank, world_size = 0, 1


def _counting(model):
    """``model`` with its real tokenizer replaced by a subclass of it that counts the captions it
    tokenises (nothing else changes: it is open_clip's own tokenizer underneath)."""
    base = type(model.tokenizer)

    class Counting(base):
        calls = 0

        def __call__(self, texts, context_length=None):
            Counting.calls += len(texts)
            return super().__call__(texts, context_length)

    counting = Counting.__new__(Counting)
    counting.__dict__.update(model.tokenizer.__dict__)
    model.tokenizer = counting
    return model, Counting


@pytest.fixture
def model():
    from medclip_cli.models import resolve_model

    return resolve_model(encoder="test-vit", pretrained="none")


def _dataset(folder: Path, captions: list[str | None]) -> Dataset:
    folder.mkdir(parents=True, exist_ok=True)
    samples = [Sample(f"s{k}", write_png(folder / f"s{k}.png", k), c) for k, c in enumerate(captions)]
    return Dataset("test", folder, "train", samples, {})


def _pairs(dataset, model, **kwargs):
    return load_pairs(dataset, model, strict=False, progress=NullProgress(), soft_label=None, soft=False, **kwargs)


def test_second_load_reads_the_cache_and_equals_direct_tokenisation(tmp_path: Path, model):
    from open_clip.tokenizer import SimpleTokenizer

    dataset = _dataset(tmp_path / "set", [c if k != 3 else None for k, c in enumerate(CAPTIONS)])
    direct = SimpleTokenizer(context_length=model.context_length)([c for c in CAPTIONS if c != CAPTIONS[3]])
    model, counting = _counting(model)

    first = _pairs(dataset, model)
    assert counting.calls == 9
    stored = list(tokens_dir().glob("*.npy"))
    assert len(stored) == 1
    second = _pairs(dataset, model)
    assert counting.calls == 9  # nothing tokenised the second time
    for pairs in (first, second):
        assert pairs.tokens.dtype == torch.int32
        torch.testing.assert_close(pairs.tokens.long(), direct, rtol=0, atol=0)
    # The pair set's tokens are a memory map of the stored file, not a copy read into memory.
    del first
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(stored[0]) in maps.read_text()
    mapped = token_cache._read(stored[0], 9, model.context_length)
    assert isinstance(mapped, np.memmap) and Path(mapped.filename) == stored[0]

    # Batches hand the step int64 ids equal to the direct tokenisation of the batch's captions.
    cfg = TrainConfig(output=tmp_path, data=tmp_path, batch_size=4)
    batches = Batches(second, cfg, torch.device("cpu"), _OneProcess(), [(0, 0, 2)])
    order = batches.order_of(0)
    for micro, (_, tokens, _, _) in enumerate(batches):
        assert tokens.dtype == torch.int64
        torch.testing.assert_close(tokens, direct[order[micro * 4 : micro * 4 + 4]], rtol=0, atol=0)


def test_a_changed_caption_or_tokenizer_gives_a_new_key(model):
    from open_clip.tokenizer import SimpleTokenizer

    ident = tokenizer_identity(model.tokenizer, 77)
    assert ident == tokenizer_identity(SimpleTokenizer(context_length=77), 77)  # the same tokenizer, rebuilt
    key = token_cache.cache_key(ident, CAPTIONS)
    assert token_cache.cache_key(ident, CAPTIONS[:-1] + [CAPTIONS[-1] + "."]) != key
    assert token_cache.cache_key(ident, CAPTIONS[1:] + CAPTIONS[:1]) != key  # order matters
    assert token_cache.cache_key(ident, ["a", "bc"]) != token_cache.cache_key(ident, ["ab", "c"])
    others = [
        tokenizer_identity(SimpleTokenizer(context_length=64), 64),
        tokenizer_identity(SimpleTokenizer(context_length=77, clean="whitespace"), 77),
        tokenizer_identity(SimpleTokenizer(context_length=77, additional_special_tokens=["<pad>"]), 77),
    ]
    changed = SimpleTokenizer(context_length=77)
    merge = next(iter(changed.bpe_ranks))
    changed.bpe_ranks = {**changed.bpe_ranks, merge: len(changed.bpe_ranks)}  # one merge ranked last
    others.append(tokenizer_identity(changed, 77))
    assert len({ident, *others}) == 5


def test_hugging_face_tokenizer_identity_follows_its_vocabulary(tmp_path: Path):
    from open_clip.tokenizer import HFTokenizer
    from transformers import BertTokenizer

    from tests.models.formats import TINY_BERT_WORDS, write_tiny_bert

    folder = write_tiny_bert(tmp_path / "bert")
    first = tokenizer_identity(HFTokenizer(str(folder), context_length=16), 16)
    assert first is not None and first == tokenizer_identity(HFTokenizer(str(folder), context_length=16), 16)
    assert tokenizer_identity(HFTokenizer(str(folder), context_length=16, strip_sep_token=True), 16) != first
    # The same tokenizer with one word of its vocabulary changed.
    words = tmp_path / "words.txt"
    words.write_text("\n".join(list(TINY_BERT_WORDS[:-1]) + ["zebra"]) + "\n")
    BertTokenizer(str(words), do_lower_case=True).save_pretrained(tmp_path / "changed")
    assert tokenizer_identity(HFTokenizer(str(tmp_path / "changed"), context_length=16), 16) not in (None, first)

    tok = HFTokenizer(str(folder), context_length=16)
    out = caption_tokens(tok, tok, CAPTIONS, 16)
    assert isinstance(out, np.memmap)
    torch.testing.assert_close(torch.from_numpy(np.asarray(out)).long(), tok(CAPTIONS), rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "wrong_dtype"])
def test_a_corrupt_file_is_rebuilt(tmp_path: Path, model, damage):
    dataset = _dataset(tmp_path / "set", CAPTIONS)
    model, counting = _counting(model)
    expected = _pairs(dataset, model).tokens.clone()
    [path] = tokens_dir().glob("*.npy")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file at all" * 10)
    elif damage == "wrong_shape":
        np.save(path, np.zeros((3, model.context_length), dtype=np.int32))
    else:
        np.save(path, expected.numpy().astype(np.int64))
    counting.calls = 0
    pairs = _pairs(dataset, model)
    assert counting.calls == len(CAPTIONS)  # tokenised again
    torch.testing.assert_close(pairs.tokens, expected, rtol=0, atol=0)
    assert token_cache._read(path, len(CAPTIONS), model.context_length) is not None  # rewritten whole
    counting.calls = 0
    _pairs(dataset, model)
    assert counting.calls == 0


def test_no_cache_neither_reads_nor_writes(tmp_path: Path, model):
    dataset = _dataset(tmp_path / "set", CAPTIONS)
    model, counting = _counting(model)
    pairs = _pairs(dataset, model, cache=False)
    assert counting.calls == len(CAPTIONS)
    assert not tokens_dir().exists() or not list(tokens_dir().iterdir())
    assert not isinstance(pairs.pixels, np.memmap)  # the decode cache is bypassed too
    cached = _pairs(dataset, model)
    assert counting.calls == 2 * len(CAPTIONS)
    again = _pairs(dataset, model, cache=False)
    assert counting.calls == 3 * len(CAPTIONS)  # a stored file exists now, and is not read
    torch.testing.assert_close(again.tokens, cached.tokens, rtol=0, atol=0)


def test_an_unwritable_cache_folder_still_tokenises(tmp_path: Path, model, monkeypatch):
    tokens_dir().parent.mkdir(parents=True, exist_ok=True)
    tokens_dir().write_text("a file where the folder should be")
    with pytest.warns(UserWarning, match="token cache unavailable"):
        out = caption_tokens(model.tokenizer, model.tokenize, CAPTIONS, model.context_length)
    np.testing.assert_array_equal(out, model.tokenize(CAPTIONS).numpy())


def test_finetune_no_cache_is_free_on_resume():
    from medclip_cli.training.config import RESUME_FREE

    assert "cache" in RESUME_FREE and TrainConfig(output=Path("o"), data=Path("d")).cache is True


def test_finetune_no_cache_leaves_no_cache_files_and_a_cached_run_fills_both(cli, small_medpix, tmp_path):
    from medclip_cli.data.home import cache_dir

    common = ("finetune", "--encoder", "test-vit", "--data", small_medpix, "--batch-size", "8", "--max-steps", "1",
              "--val-split", "none", "--device", "cpu", "--json")  # fmt: skip
    result = cli(*common, "--output", tmp_path / "bare", "--no-cache")
    assert result.exit_code == 0, result.output
    assert not (cache_dir() / "tokens").exists() and not (cache_dir() / "pixels").exists()
    result = cli(*common, "--output", tmp_path / "cached")
    assert result.exit_code == 0, result.output
    assert len(list((cache_dir() / "tokens").glob("*.npy"))) == 1 and (cache_dir() / "pixels").is_dir()
