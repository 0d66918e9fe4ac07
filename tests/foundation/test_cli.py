"""The command tree, start-up cost, and the error boundary."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import run_medclip


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from medclip_cli.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('torch', 'open_clip', 'timm', 'transformers', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported {out.stdout.strip()}"


def test_every_command_has_help(cli):
    for command in ("finetune", "evaluate", "classify", "reproduce", "encoders", "plugins", "data"):
        result = cli(command, "--help")
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.output.startswith("medclip ")


def test_unknown_encoder_is_a_usage_error_with_close_matches():
    result = run_medclip("classify", "x.png", "--labels", "a,b", "--encoder", "vit-b-33")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown encoder 'vit-b-33'" in lines[0] and "vit-b-32" in lines[0]
    assert "medclip encoders" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_variable_shows_the_traceback():
    result = run_medclip("classify", "x.png", "--labels", "a", "--encoder", "nope", env={"MEDCLIP_DEBUG": "1"})
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_encoders_json_lists_study_and_test_encoders(cli):
    result = cli("encoders", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    by_name = {r["name"]: r for r in rows if "name" in r}
    for name in ("rn50", "rn101", "rn50x4", "vit-b-32", "vit-b-16", "vit-l-14", "test-vit", "minilm-l6", "clip-text"):
        assert name in by_name, name
    assert by_name["vit-b-32"]["kind"] == "clip" and by_name["vit-b-32"]["family"] == "vit"
    assert by_name["rn50"]["family"] == "resnet" and by_name["rn50"]["embed_dim"] == 1024
    assert by_name["rn50x4"]["image_size"] == 288
    assert "openai" in by_name["vit-b-32"]["pretrained_tags"]
    assert by_name["minilm-l6"]["kind"] == "text"
    namespaces = {r["namespace"] for r in rows if "namespace" in r}
    assert {"timm:", "open_clip:", "hf:"} <= namespaces


def test_encoder_wildcards(cli):
    result = cli("encoders", "timm:*resnet5*", "--json")
    names = [r["name"] for r in json.loads(result.stdout)]
    assert "timm:resnet50" in names and all(n.startswith("timm:") for n in names)
    result = cli("encoders", "vit-*", "--json")
    names = {r["name"] for r in json.loads(result.stdout)}
    assert names == {"vit-b-32", "vit-b-16", "vit-l-14"}
