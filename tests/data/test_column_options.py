"""The CSV/JSONL column options: the same on every command that reads a data set; refused where they do not apply."""

from __future__ import annotations

import pytest

from tests.conftest import message_lines
from tests.training.conftest import make_small_medpix

COLUMN_OPTIONS = ("--image-column", "--caption-column", "--label-column", "--split-column")


def _options(*path: str) -> dict:
    import typer

    from medclip_cli.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {opt: (p.help, p.multiple) for p in command.params for opt in p.opts if opt in COLUMN_OPTIONS}


def test_data_check_finetune_and_evaluate_take_the_same_column_options():
    check = _options("data", "check")
    assert set(check) == set(COLUMN_OPTIONS)
    assert check["--label-column"][1] is True  # repeatable
    assert _options("finetune") == check
    assert _options("evaluate") == check


@pytest.mark.parametrize("command", ["data check", "finetune", "evaluate"])
@pytest.mark.parametrize(
    "option, value", [("--image-column", "path"), ("--label-column", "kind")]
)
def test_column_options_on_a_medpix_folder_are_a_one_line_usage_error(cli, tmp_path, command, option, value):
    root = make_small_medpix(tmp_path / "data", 4, 2)  # small, so that a regression fails in seconds too
    out = tmp_path / "run"
    args = {
        "data check": ["data", "check", root],
        "finetune": [
            "finetune", "--encoder", "test-vit", "--data", root, "--output", out, "--batch-size", "2",
            "--max-steps", "1", "--device", "cpu",
        ],
        "evaluate": ["evaluate", "--data", root, "--split", "dev", "--encoder", "test-vit", "--device", "cpu"],
    }[command]  # fmt: skip
    result = cli(*args, option, value)
    assert result.exit_code == 2
    assert message_lines(result.stderr) == [  # finetune's log may hold "loading model ...: start" first
        f"error: {option}: the medpix2 data-set format takes no such option "
        "(column options are for CSV/TSV/JSONL manifests; leave it out)"
    ]
    assert not out.exists()
