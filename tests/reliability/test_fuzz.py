"""Property-based fuzzing: whatever a manifest, label file or prompt holds, the readers raise only
medclip's own errors (which the CLI prints as one line), never a Python exception with a traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from medclip_cli.data import medpix2, tabular
from medclip_cli.data.labels import LabelField, read_label_fields
from medclip_cli.evaluation.prompts import load_prompt_set
from medclip_cli.evaluation.zeroshot import PLACEHOLDERS, check_template, class_prompts, fill_template
from medclip_cli.errors import MedclipError

FUZZ = settings(max_examples=150, deadline=None)

_cell = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["img/a.png", "../../etc/passwd", "/etc/hostname", "train", "dev", "CT", '"q,c"', "", " "]),
)
_csv_text = st.lists(st.lists(_cell, min_size=1, max_size=5), min_size=0, max_size=6).map(
    lambda rows: "\n".join(",".join(r) for r in rows)
)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_jsonl_line = st.one_of(_json_value.map(json.dumps), st.text(max_size=30))
_DEEP = "[" * 100_000
_HUGE_INT = "1" * 5_000  # Python refuses to convert integers with more than 4,300 digits


def _written(name: str, data: bytes | str):
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return folder, path


def _only_medclip_errors(call) -> None:
    try:
        call()
    except MedclipError:
        pass


@FUZZ
@given(header=st.sampled_from(["image,caption,modality,split", "image;caption", "caption", "image\tcaption", ""]), body=_csv_text)
@example(header="image,caption", body='img/a.png,"never closed\n')
@example(header="image,caption", body="img/a.png," + "x" * 200_000)
@example(header="image,caption", body="img/a.png,\0nul")
def test_csv_reader(header, body):
    folder, path = _written("data/pairs.csv", f"{header}\n{body}\n")
    with folder:
        _only_medclip_errors(lambda: tabular.splits_csv(path))
        _only_medclip_errors(lambda: tabular.load_csv(path, "all"))
        _only_medclip_errors(lambda: tabular.load_csv(path, "train", label_columns="modality"))


@FUZZ
@given(raw=st.binary(max_size=200))
@example(raw=b"\xef\xbb\xbfimage,caption\n\xff\xfe,x\n")
def test_csv_reader_bytes(raw):
    folder, path = _written("data/pairs.csv", raw)
    with folder:
        _only_medclip_errors(lambda: tabular.load_csv(path, "all"))


@FUZZ
@given(lines=st.lists(_jsonl_line, max_size=6))
@example(lines=[_DEEP])
@example(lines=[_HUGE_INT])
@example(lines=['{"image": ' + _HUGE_INT + "}"])
@example(lines=['{"a": ' * 5000 + "1" + "}" * 5000])
@example(lines=['{"a": ' * 950 + "1" + "}" * 950])
def test_jsonl_reader(lines):
    folder, path = _written("data/pairs.jsonl", "\n".join(lines))
    with folder:
        _only_medclip_errors(lambda: tabular.splits_jsonl(path))
        _only_medclip_errors(lambda: tabular.load_jsonl(path, "all"))


@FUZZ
@given(lines=st.lists(_jsonl_line, max_size=6), descriptions=_jsonl_line)
@example(lines=[_DEEP], descriptions=_DEEP)
@example(lines=[_HUGE_INT], descriptions=_HUGE_INT)
@example(lines=['{"image": "../../etc/passwd", "Type": "CT"}'], descriptions='[{"image": 5}]')
def test_medpix_reader(lines, descriptions):
    folder, path = _written("MedPix-2-0/splitted_dataset/descriptions_test.jsonl", "\n".join(lines))
    with folder:
        (path.parents[1] / "Descriptions.json").write_text(descriptions, encoding="utf-8", errors="surrogatepass")
        root = path.parents[2]
        _only_medclip_errors(lambda: medpix2.load(root, "test"))
        _only_medclip_errors(lambda: medpix2.load(root, "all"))


@FUZZ
@given(text=st.text(max_size=120))
@example(text="[modality]\nclasses = 5\n")
@example(text="[modality.classes]\nCT = 1\n")
@example(text="[modality]\naliases = [1, 2]\n")
@example(text="modality = 3\n")
def test_label_file_reader(text):
    folder, path = _written("labels.toml", text)
    with folder:
        _only_medclip_errors(lambda: read_label_fields(path))


@FUZZ
@given(
    classes=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    aliases=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    value=_json_value,
    unlisted=st.booleans(),
)
def test_label_mapping(classes, aliases, value, unlisted):
    field = LabelField("modality", tuple(classes), classes, aliases, unlisted)
    try:
        found = field.canonical(value)
    except MedclipError:
        return
    assert found is None or found in classes or unlisted
    if found is not None:
        assert isinstance(field.readable_name(found), str)
        assert found in field.with_classes([found]).classes


@FUZZ
@given(template=st.text(max_size=40), classname=st.text(max_size=20))
@example(template="{0.__class__.__mro__}", classname="x")
@example(template="{} {0.__init__.__globals__}", classname="{}")
@example(template="{{}}", classname="CT")
@example(template="{label}", classname="CT")
def test_prompt_filling_is_plain_substitution(template, classname):
    try:
        filled = fill_template(template, classname)
    except MedclipError:
        assert not any(p in template for p in PLACEHOLDERS)
        return
    expected = template
    for placeholder in PLACEHOLDERS:
        expected = expected.replace(placeholder, classname)
    assert filled == expected  # nothing in the template is ever interpreted
    assert check_template(template) == template


@FUZZ
@given(
    classnames=st.lists(st.text(max_size=10), max_size=4),
    templates=st.one_of(
        st.lists(st.text(max_size=20), max_size=3),
        st.dictionaries(st.text(max_size=10), st.lists(st.text(max_size=20), max_size=2), max_size=3),
    ),
)
def test_class_prompts(classnames, templates):
    try:
        prompts = class_prompts(classnames, templates)
    except MedclipError:
        return
    assert len(prompts) == len(classnames)


@FUZZ
@given(suffix=st.sampled_from([".toml", ".json", ".txt"]), text=st.one_of(st.text(max_size=80), _json_value.map(json.dumps)))
@example(suffix=".json", text=_DEEP)
@example(suffix=".json", text=_HUGE_INT)
@example(suffix=".toml", text='templates = [1, "{}"]')
@example(suffix=".toml", text='templates = ["{}"]\n[tasks.modality]\nclasses = {CT = "x"}\n')
def test_prompt_file_reader(suffix, text):
    folder, path = _written(f"prompts{suffix}", text)
    with folder:
        _only_medclip_errors(lambda: load_prompt_set(path))
