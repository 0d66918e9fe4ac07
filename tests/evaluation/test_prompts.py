"""Prompt sets: the shipped ones, user files, per-task and per-class prompts, clear errors."""

from __future__ import annotations

import pytest

from medclip_cli.data.labels import LabelField
from medclip_cli.evaluation.prompts import list_prompt_sets, load_prompt_set
from medclip_cli.evaluation.zeroshot import class_prompts
from medclip_cli.errors import UsageError

PLANE = LabelField("plane", ("Axial", "Coronal"), {"Axial": "axial", "Coronal": "coronal"})


def _filled(prompt_set, task, field=PLANE):
    per_class = prompt_set.for_task(task, field)
    return dict(zip(per_class, class_prompts(list(per_class), per_class)))


def test_default_is_the_seed_prompt():
    seed = load_prompt_set(None)
    assert seed.name == "seed"
    assert _filled(seed, "plane") == {"axial": ["Medical image of axial"], "coronal": ["Medical image of coronal"]}


def test_shipped_sets_include_a_radiology_ensemble_with_task_templates():
    assert {"seed", "radiology"} <= set(list_prompt_sets())
    radiology = load_prompt_set("radiology")
    plane = _filled(radiology, "plane")["axial"]
    other = _filled(radiology, "some_other_task")["axial"]
    assert len(plane) >= 3 and all("axial" in p for p in plane)
    assert plane != other and other[0] == "Medical image of axial"


def test_user_toml_with_per_class_prompts(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'templates = ["scan of {c}"]\n'
        "[tasks.plane.classes]\n"
        'Axial = ["a transverse slice", "an axial {} cut"]\n'
    )
    prompts = _filled(load_prompt_set(str(path)), "plane")
    # raw class value as key; the readable name fills the placeholder; unlisted classes use the templates
    assert prompts == {"axial": ["a transverse slice", "an axial axial cut"], "coronal": ["scan of coronal"]}


def test_user_txt_and_json_files(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("# comment\nX-ray of {}\n\nphoto of {}\n")
    assert load_prompt_set(str(txt)).templates == ("X-ray of {}", "photo of {}")
    js = tmp_path / "t.json"
    js.write_text('["an image of {c}"]')
    assert load_prompt_set(str(js)).templates == ("an image of {c}",)


def test_placeholders_are_substituted_never_formatted(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_text("{0.__class__} image of {}\n")
    assert _filled(load_prompt_set(str(path)), "plane")["axial"] == ["{0.__class__} image of axial"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('templates = ["no placeholder"]', "no {} placeholder"),
        ("templates = []", "non-empty list"),
        ('templat = ["{}"]', "unknown key 'templat'"),
        ("templates = [", "not valid TOML"),
        ('[tasks.plane]\nwords = ["{}"]', "may only hold"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(UsageError, match="bad.toml") as err:
        load_prompt_set(str(path))
    assert message in str(err.value)


def test_unknown_set_lists_known_ones_and_suggests_a_close_match():
    with pytest.raises(UsageError) as err:
        load_prompt_set("radiolgy")
    assert "known: " in str(err.value) and "did you mean 'radiology'" in str(err.value)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such prompt file"):
        load_prompt_set(str(tmp_path / "nope.toml"))
