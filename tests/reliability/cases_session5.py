"""Hostile cases against session 5's features (findings manifests, classify --output resume,
explain, embed/probe/search files, data shard, OpenI reports, reproduce --seeds), as rows of the
same table (appended to ``CASES`` in cases.py). Outcomes a row cannot show (a file resumed, maps
that must not overwrite each other, stale shards gone) are in ``test_session5.py``.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tests.data.openi_copy import write_openi

from tests.reliability import inputs as make
from tests.reliability.cases import Case, Env, _openi, _openi_with_report, _run_quiet, classify, embed, probe


def _folder(env: Env) -> object:
    for i in range(3):
        make.png(env.p("imgs") / f"s{i}.png", seed=i)
    return env.p("imgs")


def _classify_into(env: Env, name: str, content: bytes | None = None) -> list[str]:
    folder, out = _folder(env), env.p(name)
    if content is None:
        assert _run_quiet(["classify", str(folder), "--labels", "a,b", "--encoder", "test-vit", "--device", "cpu", "-o", str(out)]) == 0
    else:
        out.write_bytes(content)
    return ["classify", str(folder), "--recursive", "--labels", "a,b", "--encoder", "test-vit", "--device", "cpu", "-o", str(out)]


def _jsonl_with_bad_second_line(env: Env) -> list[str]:
    args = _classify_into(env, "o.jsonl")
    out = env.p("o.jsonl")
    first = out.read_text().splitlines()[0]
    out.write_text(first + "\n[3]\n")
    return args


def _findings(env: Env, rows: list[str]) -> object:
    for i in range(len(rows)):
        make.png(env.p("data") / "img" / f"a{i}.png", seed=i)
    lines = ["image,caption,split,cardio,edema"] + [f"img/a{i}.png,report {i},test,{r}" for i, r in enumerate(rows)]
    return make.write(env.p("data") / "pairs.csv", "\n".join(lines) + "\n")


_FINE = ["1,0", "0,1", "1,1", "0,0"]


def _evaluate(env: Env, rows: list[str], *extra: str) -> list[str]:
    return ["evaluate", "--data", str(_findings(env, rows)), "--split", "test", "--encoder", "test-vit", "--device", "cpu",
            "--no-cache", *extra]  # fmt: skip


def _embedded(env: Env, suffix: str = ".parquet") -> object:
    out = env.p(f"emb{suffix}")
    args = [*embed(env, make.medpix_set(env.p("data"), n=6))[:-2], "-o", str(out)]
    assert _run_quiet(args) == 0
    return out


def _search(env: Env, path, *extra: str) -> list[str]:
    return ["search", str(path), *extra, "--encoder", "test-vit", "--device", "cpu"]


def _edited_npz(env: Env, edit) -> object:
    out = _embedded(env, ".npz")
    arrays = dict(np.load(out, allow_pickle=False))
    edit(arrays)
    with open(out, "wb") as fh:
        np.savez(fh, **arrays)
    return out


def _image_key(arrays: dict) -> str:
    return next(k for k in sorted(arrays) if arrays[k].dtype.kind == "f" and arrays[k].ndim == 2)


def _nan_row(arrays: dict) -> None:
    arrays[_image_key(arrays)][0, :] = np.nan


def _one_d(arrays: dict) -> None:
    key = _image_key(arrays)
    arrays[key] = arrays[key][:, 0].copy()


def _parquet_edit(env: Env, edit) -> object:
    import pyarrow.parquet as pq

    out = _embedded(env)
    pq.write_table(edit(pq.read_table(out)), out)
    return out


def _two_models(env: Env) -> list[str]:
    data = make.medpix_set(env.p("data"), n=6)
    a, b = env.p("a.parquet"), env.p("b.parquet")
    for enc, out in (("test-vit", a), ("test-resnet", b)):
        assert _run_quiet(["embed", "--data", str(data), "--encoder", enc, "--device", "cpu", "-o", str(out)]) == 0
    return ["probe", "--data", str(data), "--task", "modality", "--embeddings", str(a), "--embeddings", str(b),
            "--train-split", "test", "--eval-split", "other", "--device", "cpu"]  # fmt: skip


def _two_splits(env: Env) -> object:
    train = [{"image": f"MPX{i}_t", "modality": k, "caption": f"case {i}"} for i, k in enumerate(["CT", "MR", "CT", "MR"])]
    make.medpix_set(env.p("data"), "train", train)
    return make.medpix_set(env.p("data"), "test")


def _folder_set(env: Env) -> object:
    make.png(env.p("data") / "CT" / "a.png", seed=1)
    make.png(env.p("data") / "MR" / "b.png", seed=2)
    return env.p("data")


def _shards_with_foreign(env: Env) -> list[str]:
    data = make.csv_set(env.p("data"))
    make.write(env.p("shards") / "train" / "notes.txt", "mine")
    return ["data", "shard", str(data), "--output", str(env.p("shards"))]


def _same_stem_images(env: Env) -> list[str]:
    a, b = make.png(env.p("a") / "x.png", seed=1), make.png(env.p("b") / "x.png", seed=2)
    return ["explain", str(a), str(b), "--labels", "a,b", "-o", str(env.p("maps")), "--encoder", "test-vit", "--device", "cpu"]


def _seeds(env: Env, text: str) -> list[str]:
    return ["reproduce", "--experiment", "offline-minilm-lit", "--seeds", text, "--data", str(env.p("none")),
            "--output", str(env.p("out"))]  # fmt: skip


_NOT_OURS = "is not a prediction file of `medclip classify`"
_EXPLAIN = ["--labels", "a,b", "--encoder", "test-vit", "--device", "cpu"]

SESSION5_CASES: list[Case] = [
    # -- classify DIR --recursive --output: resume only what this command wrote ------------------
    Case("classify-output-foreign-binary", "run folders and results", "--output names a binary file medclip did not write",
         "classify DIR -r -o o.csv", lambda env: _classify_into(env, "o.csv", os.urandom(300).replace(b"\n", b"\r")), 1,
         _NOT_OURS),
    Case("classify-output-foreign-one-line", "run folders and results", "--output names a one-line note without a newline",
         "classify DIR -r -o o.jsonl", lambda env: _classify_into(env, "o.jsonl", b"my notes"), 1, _NOT_OURS),
    Case("classify-output-jsonl-array", "run folders and results", "--output JSONL whose first line is a JSON array",
         "classify DIR -r -o o.jsonl", lambda env: _classify_into(env, "o.jsonl", b"[1, 2]\n"), 1, _NOT_OURS),
    Case("classify-output-foreign-csv", "run folders and results", "--output CSV of another program (other header)",
         "classify DIR -r -o o.csv", lambda env: _classify_into(env, "o.csv", b"patient,score\n7,0.5\n"), 1, _NOT_OURS),
    Case("classify-output-jsonl-bad-line", "run folders and results", "--output JSONL with a line that is not a record",
         "classify DIR -r -o o.jsonl", _jsonl_with_bad_second_line, 1, "line 2: not a prediction record"),
    Case("classify-output-other-label-set", "run folders and results", "--output CSV written with other --labels",
         "classify DIR -r -o o.csv --labels x,y,z",
         lambda env: [("x,y,z" if arg == "a,b" else arg) for arg in _classify_into(env, "o.csv")], 1,
         "was written with other labels"),
    Case("classify-output-symlink-loop", "images", "a folder holding a link to itself and to its parent (walked once)",
         "classify DIR -r -o o.csv",
         lambda env: (os.symlink("..", _folder(env) / "up"), os.symlink(env.p("imgs"), env.p("imgs") / "self"),
                      ["classify", str(env.p("imgs")), "-r", "--labels", "a,b", "--encoder", "test-vit", "--device", "cpu",
                       "-o", str(env.p("o.csv"))])[2], 0, "3 images classified"),
    # -- explain -------------------------------------------------------------------------------
    Case("explain-output-is-a-file", "run folders and results", "explain --output naming a file", "explain x.png -o notes",
         lambda env: ["explain", str(make.png(env.p("x.png"))), "-o", str(make.write(env.p("notes"), "mine")), *_EXPLAIN],
         1, "is a file, not a folder"),
    Case("explain-image-1x1", "images", "explain a 1 x 1 pixel image", "explain p.png -o maps",
         lambda env: ["explain", str(make.png(env.p("p.png"), size=(1, 1))), "-o", str(env.p("maps")), *_EXPLAIN], 0,
         "wrote 4 files"),
    Case("explain-image-3x97", "images", "explain a 3 x 97 pixel image", "explain p.png -o maps",
         lambda env: ["explain", str(make.png(env.p("p.png"), size=(3, 97))), "-o", str(env.p("maps")), *_EXPLAIN], 0,
         "wrote 4 files"),
    Case("explain-same-file-names", "run folders and results", "explain a/x.png and b/x.png into one folder (kept apart)",
         "explain a/x.png b/x.png -o maps", _same_stem_images, 0, "wrote 8 files"),
    # -- findings manifests --------------------------------------------------------------------
    Case("findings-columns-empty", "options", "--finding-columns ',,' (no names)", "evaluate --finding-columns ,,",
         lambda env: _evaluate(env, _FINE, "--finding-columns", ",,"), 2, "--finding-columns ',,': no column names"),
    Case("findings-column-missing", "data sets", "--finding-columns naming a column the manifest lacks",
         "evaluate --finding-columns cardio,nope", lambda env: _evaluate(env, _FINE, "--finding-columns", "cardio,nope"), 1,
         "no finding column 'nope'"),
    Case("findings-value-two", "data sets", "a finding value of 2 under the CheXpert convention",
         "evaluate --finding-columns cardio,edema", lambda env: _evaluate(env, ["1,0", "2,1", "0,1", "0,0"], "--finding-columns", "cardio,edema"),
         1, "value '2' is not 1, 0, -1 or blank"),
    Case("findings-value-fraction", "data sets", "a finding value of 1.5", "evaluate --finding-columns cardio,edema",
         lambda env: _evaluate(env, ["1.5,0", "0,1", "1,1", "0,0"], "--finding-columns", "cardio,edema"), 1,
         "value '1.5' is not 1, 0, -1 or blank"),
    Case("findings-caption-column", "data sets", "the caption column given as a finding column",
         "evaluate --finding-columns caption", lambda env: _evaluate(env, _FINE, "--finding-columns", "caption"), 1,
         "finding 'caption': value 'report 0'"),
    Case("findings-convention-unknown", "options", "--findings-convention nope", "evaluate --findings-convention nope",
         lambda env: _evaluate(env, _FINE, "--finding-columns", "cardio", "--findings-convention", "nope"), 2,
         "unknown findings convention 'nope'"),
    Case("findings-uncertain-unknown", "options", "--uncertain maybe", "evaluate --uncertain maybe",
         lambda env: _evaluate(env, _FINE, "--finding-columns", "cardio", "--uncertain", "maybe"), 2,
         "--uncertain 'maybe': unknown policy"),
    Case("findings-no-positive", "data sets", "findings that are all negative (AUROC undefined: null, not NaN)",
         "evaluate --finding-columns cardio,edema --json",
         lambda env: _evaluate(env, ["0,0"] * 4, "--finding-columns", "cardio,edema", "--json"), 0, '"auroc": null'),
    Case("findings-column-as-task", "options", "--task naming a finding column", "evaluate --finding-columns cardio --task cardio",
         lambda env: _evaluate(env, _FINE, "--finding-columns", "cardio", "--task", "cardio"), 2, "--task 'cardio' is not a task"),
    # -- embed / probe / search files ----------------------------------------------------------
    Case("search-blank-query", "options", "search with a query of spaces", 'search emb.parquet "   "',
         lambda env: _search(env, _embedded(env), "   "), 2, "the query text is empty"),
    Case("search-file-of-another-model", "data sets", "search a file embedded by another model",
         'search emb.parquet "chest" --encoder test-resnet',
         lambda env: [*_search(env, _embedded(env), "chest")[:3], "--encoder", "test-resnet", "--device", "cpu"], 1,
         "cannot mix embeddings of different models"),
    Case("search-k-above-rows", "options", "search -k 1000 in a file of 6 images (all 6 returned)",
         'search emb.parquet "chest" -k 1000 --json', lambda env: _search(env, _embedded(env), "chest", "-k", "1000", "--json"),
         0, '"rank": 6'),
    Case("search-npz-array-removed", "data sets", ".npz edited by hand: an array removed", 'search emb.npz "chest"',
         lambda env: _search(env, _edited_npz(env, lambda a: a.pop("caption")), "chest"), 1, "has no 'caption' array"),
    Case("search-npz-nan-row", "data sets", ".npz edited by hand: a NaN embedding", 'search emb.npz "chest"',
         lambda env: _search(env, _edited_npz(env, _nan_row), "chest"), 1, "NaN or infinite"),
    Case("search-npz-one-dimensional", "data sets", ".npz edited by hand: embeddings cut to one column",
         'search emb.npz "chest"', lambda env: _search(env, _edited_npz(env, _one_d), "chest"), 1, "(corrupt)"),
    Case("search-parquet-metadata-dropped", "data sets", "Parquet rewritten without medclip's metadata (pandas round trip)",
         'search emb.parquet "chest"',
         lambda env: _search(env, _parquet_edit(env, lambda t: t.replace_schema_metadata(None)), "chest"), 1,
         "without medclip metadata"),
    Case("search-parquet-no-rows", "data sets", "Parquet edited down to zero rows", 'search emb.parquet "chest"',
         lambda env: _search(env, _parquet_edit(env, lambda t: t.slice(0, 0)), "chest"), 2, "no rows to search"),
    Case("probe-embeddings-two-models", "data sets", "probe --embeddings from two different models",
         "probe --embeddings a.parquet --embeddings b.parquet", _two_models, 1, "cannot mix embeddings of different models"),
    Case("probe-shots-zero", "options", "--shots 0", "probe --shots 0", lambda env: probe(env, _two_splits(env), "--shots", "0"),
         2, "k must be at least 1"),
    Case("probe-shots-empty", "options", "--shots ''", "probe --shots ''", lambda env: probe(env, _two_splits(env), "--shots", ""),
         2, "no values"),
    Case("embed-output-suffix", "options", "embed -o emb.csv", "embed --data DIR -o emb.csv",
         lambda env: [*embed(env, make.medpix_set(env.p("data")))[:-2], "-o", str(env.p("emb.csv"))], 1,
         "ends in .parquet or .npz"),
    Case("embed-output-foreign-file", "run folders and results", "embed -o onto a file that is not an embedding file",
         "embed --data DIR -o notes.parquet",
         lambda env: [*embed(env, make.medpix_set(env.p("data")))[:-2], "-o", str(make.write(env.p("n.parquet"), "notes"))], 1,
         "exists and is not an embedding file"),
    # -- data shard ----------------------------------------------------------------------------
    Case("shard-output-inside-folder-set", "run folders and results", "data shard DIR --output DIR/shards",
         "data shard DIR --output DIR/shards",
         lambda env: ["data", "shard", str(_folder_set(env)), "--output", str(env.p("data") / "shards")], 2,
         "is inside the data set being sharded"),
    Case("shard-output-is-the-set", "run folders and results", "data shard SHARDS --output SHARDS (a shard set onto itself)",
         "data shard shards --output shards",
         lambda env: (_run_quiet(["data", "shard", str(make.csv_set(env.p("data"))), "--output", str(env.p("shards"))]),
                      ["data", "shard", str(env.p("shards")), "--output", str(env.p("shards"))])[1], 2,
         "is inside the data set being sharded"),
    Case("shard-split-folder-foreign", "run folders and results", "--output whose split folder holds a user's file",
         "data shard pairs.csv --output shards", _shards_with_foreign, 1, "which `medclip data shard` did not write"),
    Case("shard-samples-negative", "options", "--samples-per-shard -3", "data shard pairs.csv --samples-per-shard -3",
         lambda env: ["data", "shard", str(make.csv_set(env.p("data"))), "--output", str(env.p("s")), "--samples-per-shard", "-3"],
         2, "must be 1 or more"),
    # -- OpenI reports -------------------------------------------------------------------------
    Case("data-openi-binary-report", "data sets", "an OpenI report of random bytes (skipped, listed)", "data check openi/",
         lambda env: ["data", "check", str(_openi_with_report(env, "1.xml", os.urandom(400).decode("latin-1")))], 1,
         "1.xml: malformed XML", report=True),
    Case("data-openi-external-entity", "data sets", "an OpenI report declaring an external entity (file:///etc/hostname)",
         "data check openi/",
         lambda env: ["data", "check", str(_openi_with_report(env, "1.xml", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]><eCitation>&x;</eCitation>'))],
         1, "XML with an entity declaration ('x'), refused", report=True),
    Case("data-openi-no-reports", "data sets", "an OpenI copy whose report folder is empty", "data check openi/",
         lambda env: (lambda root: ([p.unlink() for p in (root / "ecgen-radiology").glob("*.xml")], ["data", "check", str(root)])[1])(write_openi(env.p("openi"))),
         1, "holds no .xml report"),
    # -- reproduce --seeds ---------------------------------------------------------------------
    Case("option-seeds-negative", "options", "--seeds -1", "reproduce --seeds -1", lambda env: _seeds(env, "-1"), 2,
         "-1 is not a seed from 0 to 4,294,967,295"),
    Case("option-seeds-too-large", "options", "--seeds 99999999999999999999", "reproduce --seeds 99999999999999999999",
         lambda env: _seeds(env, "99999999999999999999"), 2, "is not a seed from 0"),
    Case("option-seeds-hex", "options", "--seeds 0x10", "reproduce --seeds 0x10", lambda env: _seeds(env, "0x10"), 2,
         "expected whole numbers"),
    Case("option-seeds-semicolons", "options", "--seeds '1;2'", "reproduce --seeds '1;2'", lambda env: _seeds(env, "1;2"), 2,
         "expected whole numbers"),
    Case("option-seeds-blank", "options", "--seeds ' '", "reproduce --seeds ' '", lambda env: _seeds(env, " "), 2,
         "give one or more different seeds"),
]
