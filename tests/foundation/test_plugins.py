"""Plugins: the example package installed for real, broken plugins, duplicates, in-process hooks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medclip_cli import hookimpl
from medclip_cli.encoders import EncoderSpec, TowerConfig, get_registry
from medclip_cli.errors import PluginError
from medclip_cli.plugins import get_plugin_manager
from tests.conftest import REPO, run_medclip

EXAMPLE = REPO / "plugins" / "medclip-example-encoder"


def _fake_distribution(root: Path, name: str, module_source: str, entry_name: str | None = None) -> None:
    """An installed distribution on disk (module + dist-info with a medclip entry point)."""
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[medclip]\n{entry_name or name} = {name}\n")


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
    )
    return target


def test_example_plugin_installs_and_is_listed(example_installed):
    env = {"PYTHONPATH": str(example_installed)}
    result = run_medclip("encoders", "example-*", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["example-convnext-atto"]
    assert rows[0]["plugin"] == "example_encoder" and rows[0]["kind"] == "image"
    plugins = json.loads(run_medclip("plugins", "--json", env=env).stdout)
    example = [p for p in plugins["plugins"] if p["name"] == "example_encoder"]
    assert example and example[0]["distribution"] == "medclip-example-encoder"
    assert example[0]["hooks"] == ["register_encoders"]


def test_example_plugin_encoder_builds_a_model(example_installed, tmp_path):
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (80, 60), 128).save(image)
    env = {"PYTHONPATH": str(example_installed)}
    result = run_medclip("classify", image, "--labels", "a,b", "--encoder", "example-convnext-atto", "--json", env=env)
    assert result.returncode == 0, result.stderr
    probs = [p["probability"] for p in json.loads(result.stdout)[0]["predictions"]]
    assert sum(probs) == pytest.approx(1.0)


def test_plugin_that_raises_on_import_is_one_warning(tmp_path):
    _fake_distribution(tmp_path, "broken_plugin", "raise RuntimeError('boom at import')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    result = run_medclip("encoders", "test-*", "--json", env=env)
    assert result.returncode == 0
    assert {r["name"] for r in json.loads(result.stdout)} == {"test-vit", "test-resnet", "test-text"}
    warnings = [line for line in result.stderr.splitlines() if "broken_plugin" in line]
    assert len(warnings) == 1 and "boom at import" in warnings[0]
    assert "Traceback" not in result.stderr
    failures = json.loads(run_medclip("plugins", "--json", env=env).stdout)["failures"]
    assert failures[0]["name"] == "broken_plugin" and "boom at import" in failures[0]["error"]


def test_plugin_with_a_wrong_hook_signature_is_skipped(tmp_path):
    source = """
        from medclip_cli import hookimpl

        @hookimpl
        def register_encoders(register, something_else):
            pass
    """
    _fake_distribution(tmp_path, "badsig_plugin", source)
    result = run_medclip("plugins", "--json", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0
    failures = json.loads(result.stdout)["failures"]
    assert failures and failures[0]["name"] == "badsig_plugin"
    assert "something_else" in failures[0]["error"]


def test_plugin_registering_an_existing_name_fails_naming_both(tmp_path):
    source = """
        from medclip_cli import hookimpl
        from medclip_cli.encoders import EncoderSpec

        @hookimpl
        def register_encoders(register):
            register(EncoderSpec(name="vit-b-32", kind="clip", family="vit", build=lambda tag: None))
    """
    _fake_distribution(tmp_path, "dup_plugin", source)
    result = run_medclip("encoders", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    assert "'vit-b-32' is registered by both 'open_clip_encoders' and 'dup_plugin'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


class _InProcessPlugin:
    @hookimpl
    def register_encoders(self, register):
        register(
            EncoderSpec(
                name="inproc-vit",
                kind="clip",
                family="vit",
                build=lambda tag: TowerConfig(
                    vision_cfg={"image_size": 16, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
                    text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
                    embed_dim=16,
                ),
                image_size=16,
            )
        )


@pytest.fixture
def inproc_plugin():
    plugin = _InProcessPlugin()
    pm = get_plugin_manager()
    pm.register(plugin, name="inproc")
    yield plugin
    pm.unregister(plugin)


def test_in_process_plugin_encoder_is_usable(inproc_plugin):
    from medclip_cli.models import resolve_model

    spec = get_registry().get("inproc-vit")
    assert spec.plugin == "inproc"
    model = resolve_model(encoder="inproc-vit")
    assert model.embed_dim == 16 and model.preprocess.image_size == 16


def test_duplicate_in_process_registration_is_an_error(inproc_plugin):
    class Again:
        @hookimpl
        def register_encoders(self, register):
            register(EncoderSpec(name="inproc-vit", kind="clip", family="vit", build=lambda tag: None))

    pm = get_plugin_manager()
    again = Again()
    pm.register(again, name="again")
    try:
        with pytest.raises(PluginError, match="'inproc-vit' is registered by both 'inproc' and 'again'"):
            get_registry()
    finally:
        pm.unregister(again)
    

def test_one_collector_for_every_registry(inproc_plugin):
    """A plugin whose hook raises is one warning naming its distribution; its other items and
    every other plugin's items are still collected, in both registries."""
    from medclip_cli.data import dataset_formats

    class Broken:
        @hookimpl
        def register_encoders(self, register):
            raise RuntimeError("bug in the plugin")

        @hookimpl
        def register_datasets(self, register):
            raise RuntimeError("bug in the plugin")

    pm = get_plugin_manager()
    broken = Broken()
    pm.register(broken, name="broken")
    try:
        with pytest.warns(UserWarning) as caught:
            assert "inproc-vit" in get_registry().encoders and "csv" in dataset_formats()
        messages = [str(w.message) for w in caught]
        assert len(messages) == 2
        assert all("'broken' from registered in-process raised" in m and "bug in the plugin" in m for m in messages)
    finally:
        pm.unregister(broken)
    assert "inproc-vit" in get_registry().encoders  # collected again without the broken plugin


def test_reset_forgets_every_registry():
    from medclip_cli import plugins
    from medclip_cli.data import dataset_formats

    encoders, formats = get_registry().encoders, dataset_formats()
    plugins.reset()
    assert get_registry().encoders is not encoders and dataset_formats() is not formats
    assert get_registry().encoders.keys() == encoders.keys() and dataset_formats().keys() == formats.keys()


def test_unknown_data_set_format_gets_close_matches(tmp_path):
    from medclip_cli.data import resolve_format
    from medclip_cli.errors import UsageError

    with pytest.raises(UsageError, match=r"did you mean jsonl\?"):
        resolve_format(tmp_path, "jsnl")
