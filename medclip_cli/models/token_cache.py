"""The token cache: a split's captions tokenised once, kept on disk as int32.

Layout under ``MEDCLIP_HOME/cache/tokens/``::

    <key>.npy        N x context int32, row k the tokens of caption k

``<key>`` hashes the cache version, the tokenizer's identity (:func:`tokenizer_identity`: its
class, context length, settings, library version and a digest of its vocabulary and merges, or
of a Hugging Face tokenizer's JSON) and every caption in order. A changed caption or tokenizer
reads another file. A file is written under a temporary name and renamed, so a reader never
sees half of one; the next run opens it as a memory map (copy-on-write, like the decode cache:
writable, never written back), so 200k captions cost neither tokenising time nor their size
in RAM. A file that is unreadable or of the wrong shape is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from medclip_cli.atomic import match_umask
from medclip_cli.data.home import cache_dir
from medclip_cli.errors import ModelError
from medclip_cli.progress import NullProgress, ProgressReporter

CACHE_VERSION = 1  # bump when what a tokenizer's output turns into on disk changes
CHUNK = 4096  # captions tokenised at a time: rows are independent, so the result is the same


def tokens_dir() -> Path:
    return cache_dir() / "tokens"


def caption_tokens(
    tokenizer,
    tokenize: Callable[[list[str]], object],
    captions: Sequence[str],
    context_length: int,
    *,
    cache: bool = True,
    progress: ProgressReporter | None = None,
    label: str = "tokenising captions",
) -> np.ndarray:
    """The int32 tokens ``[len(captions), context_length]`` of ``captions``, as ``tokenize``
    gives them (``tokenizer`` is what it wraps, for the cache key).

    With ``cache`` they come from (or go to) the token cache: a memory map of the stored file.
    Without it, or for a tokenizer whose identity cannot be told (:func:`tokenizer_identity`),
    or when the cache folder cannot be written, they are tokenised into memory.
    """
    captions = list(captions)
    progress = progress or NullProgress()
    identity = tokenizer_identity(tokenizer, context_length) if cache and captions else None
    if identity is not None:
        path = tokens_dir() / f"{cache_key(identity, captions)}.npy"
        found = _read(path, len(captions), context_length)
        if found is not None:
            return found
        try:
            _write(path, tokenize, captions, context_length, progress, label)
        except OSError as exc:  # unwritable or full cache folder: still tokenise, just every time
            warnings.warn(f"token cache unavailable ({exc}); tokenising in memory", stacklevel=2)
        else:
            found = _read(path, len(captions), context_length)
            if found is not None:
                return found
    out = np.empty((len(captions), context_length), dtype=np.int32)
    _tokenise_into(out, tokenize, captions, progress, label)
    return out


def cache_key(identity: str, captions: Sequence[str]) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}\n{identity}\n{len(captions)}\n".encode())
    for caption in captions:
        data = caption.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))  # length-prefixed: no separator is ambiguous
        digest.update(data)
    return digest.hexdigest()[:32]


def tokenizer_identity(tokenizer, context_length: int) -> str | None:
    """A sha256 of what decides ``tokenizer``'s output, or None when that cannot be told.

    open_clip's BPE ``SimpleTokenizer``: its merges and vocabulary, split pattern, clean and
    reduction functions and special tokens. A Hugging Face tokenizer (open_clip's ``HFTokenizer``
    or medclip's ``HFTextTokenizer`` around one): the fast tokenizer's whole JSON (vocabulary,
    normaliser, pre-tokeniser, post-processor), or a slow one's vocabulary and the bytes of its
    vocabulary files, plus its padding and truncation side. Always: the wrapper's class and
    simple settings, the context length and the versions of open_clip and transformers.
    """
    digest = hashlib.sha256()
    cls = type(tokenizer)
    digest.update(f"{cls.__module__}.{cls.__qualname__}\ncontext={context_length}\n".encode())
    digest.update(_settings(tokenizer).encode())
    digest.update(f"open_clip={_version('open_clip_torch')} transformers={_version('transformers')}\n".encode())
    if isinstance(getattr(tokenizer, "bpe_ranks", None), dict) and isinstance(getattr(tokenizer, "encoder", None), dict):
        pattern = getattr(tokenizer, "pat", None)
        digest.update(f"pattern={getattr(pattern, 'pattern', pattern)!r}\n".encode())
        for merge, rank in tokenizer.bpe_ranks.items():
            digest.update(f"m{rank}\0{merge!r}\n".encode())
        for token, index in tokenizer.encoder.items():
            digest.update(f"v{index}\0{token}\n".encode())
        return digest.hexdigest()
    hf = getattr(tokenizer, "tokenizer", None)
    if hf is None or not callable(getattr(hf, "get_vocab", None)):
        return None
    hf_cls = type(hf)
    digest.update(f"{hf_cls.__module__}.{hf_cls.__qualname__}\n".encode())
    digest.update(_settings(hf).encode())
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
        return digest.hexdigest()
    # A slow tokenizer: its vocabulary, special tokens and the bytes of its files (e.g. a
    # SentencePiece model, whose scores the vocabulary alone does not show).
    for token, index in sorted(hf.get_vocab().items(), key=lambda item: (item[1], item[0])):
        digest.update(f"v{index}\0{token}\n".encode())
    digest.update(repr(sorted((str(k), str(v)) for k, v in getattr(hf, "special_tokens_map", {}).items())).encode())
    for key, value in sorted(getattr(hf, "init_kwargs", {}).items()):
        if key.endswith("_file") and isinstance(value, (str, os.PathLike)) and Path(value).is_file():
            digest.update(f"{key}={hashlib.sha256(Path(value).read_bytes()).hexdigest()}\n".encode())
        elif key != "name_or_path" and isinstance(value, (str, int, float, bool, type(None))):
            digest.update(f"{key}={value!r}\n".encode())
    return digest.hexdigest()


def _settings(obj) -> str:
    """The simple settings of ``obj`` (numbers, strings, flags, functions by name), sorted."""
    lines = []
    for name, value in sorted(vars(obj).items()):
        if isinstance(value, (str, int, float, bool, type(None))):
            lines.append(f"{name}={value!r}")
        elif isinstance(value, partial):
            lines.append(f"{name}=partial({_function_name(value.func)}, {value.args!r}, {sorted(value.keywords.items())!r})")
        elif callable(value) and hasattr(value, "__qualname__"):
            lines.append(f"{name}={_function_name(value)}")
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value):
            lines.append(f"{name}={list(value)!r}")
    return "\n".join(lines) + "\n"


def _function_name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "-"


def _read(path: Path, rows: int, context_length: int) -> np.ndarray | None:
    """The stored tokens, or None when the file is absent, unreadable or not the expected array."""
    try:
        array = np.load(path, mmap_mode="c")  # copy-on-write: a tensor over it is writable, the file never written
    except (OSError, ValueError, EOFError):  # absent, a bad header, or shorter than its header says
        return None
    if not isinstance(array, np.ndarray) or array.dtype != np.int32 or array.shape != (rows, context_length):
        return None
    return array


def _write(path: Path, tokenize, captions: list[str], context_length: int, progress: ProgressReporter, label: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy.tmp")
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(len(captions), context_length))
        _tokenise_into(out, tokenize, captions, progress, label)
        out.flush()
        del out
        match_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tokenise_into(out: np.ndarray, tokenize, captions: list[str], progress: ProgressReporter, label: str) -> None:
    task = progress.task(label, total=len(captions))
    for start in range(0, len(captions), CHUNK):
        part = np.asarray(tokenize(captions[start : start + CHUNK]))
        if part.shape != (min(CHUNK, len(captions) - start), out.shape[1]):
            raise ModelError(f"the tokenizer gave an array of shape {part.shape} for {min(CHUNK, len(captions) - start)} captions")
        if part.size and (part.min() < np.iinfo(np.int32).min or part.max() > np.iinfo(np.int32).max):
            raise ModelError("the tokenizer gave token ids beyond int32")
        out[start : start + len(part)] = part
        progress.advance(task, len(part))
    progress.done(task)
