"""Shared pieces of the reliability suite: an archive server and model bundles built once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """Saved bundles of the two tiny test encoders (copied into each case that needs one)."""
    from medclip_cli.models import resolve_model
    from medclip_cli.models.bundle import save_bundle

    root = tmp_path_factory.mktemp("bundles")
    return {
        f"{kind}-bundle": save_bundle(resolve_model(None, f"test-{kind}", None, "none"), root / f"{kind}-bundle")
        for kind in ("vit", "resnet")
    }


@pytest.fixture(scope="module")
def archive_server():
    from tests.data.test_download import ArchiveServer

    server = ArchiveServer()
    yield server
    server.close()


@pytest.fixture
def fresh_plugins():
    """Plugins and data-set formats are rebuilt after a case that installs a plugin."""
    from medclip_cli import plugins

    yield
    plugins.reset()
