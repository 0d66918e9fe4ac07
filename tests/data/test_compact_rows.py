"""A split of millions of rows: what reading a manifest keeps per row, and that it is the same data.

``Sample`` keeps its path as a string relative to one folder string the split shares (the id, when
derived, is that same string), rows with equal labels share one dict, and a manifest is read row
by row instead of as a list of every row's dict. The bounds below are tracemalloc's (what Python
allocates, not timings); the code before this change kept 1,000 B and peaked at 1,575 B per row
of the 20,000-row CSV below.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import tracemalloc
from pathlib import Path

import pytest

from medclip_cli.data import load_dataset
from medclip_cli.data.dataset import Sample
from medclip_cli.data.manifest_read import _physical_lines, iter_csv, read_csv

ROWS = 20_000


def _manifests(folder: Path) -> dict[str, Path]:
    lines = ["image,caption,modality,split"] + [
        f"img/{k // 1000:04d}/{k:07d}.png,a chest ct of case {k} with a small lesion,{'CT' if k % 2 else 'MR'},{'train' if k % 10 else 'dev'}"
        for k in range(ROWS)
    ]
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    records = (
        json.dumps({"image": f"img/{k:07d}.png", "caption": f"a chest ct of case {k}", "modality": "CT", "split": "train"})
        for k in range(ROWS)
    )
    (folder / "m.jsonl").write_text("\n".join(records) + "\n")
    return {"csv": folder / "m.csv", "jsonl": folder / "m.jsonl"}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_large_manifest_keeps_little_per_row(tmp_path, kind):
    path = _manifests(tmp_path)[kind]
    load_dataset(path, "train")  # imports and plugin discovery, outside the measurement
    tracemalloc.start()
    try:
        dataset = load_dataset(path, "train")
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rows = len(dataset)
    assert rows == (ROWS - ROWS // 10 if kind == "csv" else ROWS)
    assert kept / rows < 400, f"{kept / rows:.0f} B kept per row"
    assert peak / rows < 800, f"{peak / rows:.0f} B at the peak per row"


def test_rows_share_their_folder_name_and_labels(tmp_path):
    path = _manifests(tmp_path)["csv"]
    dataset = load_dataset(path, "train")
    first, second, third = dataset.samples[:3]
    assert first.image == tmp_path / "img/0000/0000001.png" and first.id == "img/0000/0000001.png"
    assert first.id is first._name  # the id is the stored name itself, not a second string
    assert first._folder is second._folder
    assert first.labels == {"modality": "CT"} and first.labels is third.labels and second.labels == {"modality": "MR"}


def test_a_sample_reads_as_before():
    a = Sample("x/1", Path("/data/x/1.png"), "a caption", {"modality": "CT"})
    b = Sample("x/1", "1.png", "a caption", {"modality": "CT"}, folder="/data/x")
    assert a == b and hash(a) == hash(b) and a.image == b.image == Path("/data/x/1.png")
    assert a.path == b.path == "/data/x/1.png" and a.image.name == "1.png"
    assert Sample("x/1", Path("/data/x/1.png"), "another") != a
    assert pickle.loads(pickle.dumps(b)) == b and pickle.loads(pickle.dumps(b))._folder == "/data/x"
    assert "1.png" in repr(b) and "a caption" in repr(b)
    with pytest.raises(AttributeError, match="read-only"):
        a.caption = "changed"
    assert Sample("y", "rel/./2.png", None).path == "rel/2.png"  # as str(Path(...)) spells it
    assert Sample("y", Path("a.png"), None).labels == {}


TEXTS = [
    "a,b\n1,2\n",
    "a,b\r\n1,2\r\n3,4",
    'a,b\n"line one\nline two",2\n3,"x\r\ny"\n',
    "a,b\r1,2\r3,4\r",  # old Mac line ends only
    "a,b\n\n\n1,2\n",
    'a,b\n"quote "" inside",2\n',
    "a,b\n1,\u2028 2\n3,\u0085 4",  # separators str.splitlines() would break at
]


@pytest.mark.parametrize("text", TEXTS)
def test_lines_are_those_of_a_string_reader(text):
    assert list(_physical_lines(text)) == list(io.StringIO(text, newline=""))
    assert list(csv.reader(_physical_lines(text))) == list(csv.reader(io.StringIO(text, newline="")))


def test_bad_rows_are_still_refused_after_the_rows_before_them(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image,caption\na.png,one\nb.png,two,extra\nc.png\n")
    columns, rows = iter_csv(path)
    assert columns == ["image", "caption"]
    from medclip_cli.errors import DataError

    with pytest.raises(DataError, match=r"line 3: 3 fields, the header has 2 \(and 1 more lines\)"):
        list(rows)
    with pytest.raises(DataError, match="line 3"):
        read_csv(path)
