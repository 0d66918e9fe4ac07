"""Where medclip keeps downloads and caches (``MEDCLIP_HOME``), and the default data set."""

from __future__ import annotations

import os
from pathlib import Path

from medclip_cli.errors import DataNotDownloadedError

HOME_ENV = "MEDCLIP_HOME"
MEDPIX_DIR = "datasets/medpix2"
OPENI_DIR = "datasets/openi"


def medclip_home() -> Path:
    """``MEDCLIP_HOME``, else the user's cache folder for medclip (e.g. ``~/.cache/medclip``)."""
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("medclip"))


def cache_dir() -> Path:
    """Derived data that can be rebuilt at any time (decoded pixels)."""
    return medclip_home() / "cache"


def medpix_download_dir() -> Path:
    """Where ``medclip data download medpix2`` puts MedPix 2.0 by default."""
    return medclip_home() / MEDPIX_DIR


def openi_download_dir() -> Path:
    """Where ``medclip data download openi`` puts the OpenI chest X-ray collection by default."""
    return medclip_home() / OPENI_DIR


def default_data_root(dataset: str | None = None) -> Path:
    """The downloaded MedPix 2.0 copy: what commands read when ``--data`` is not given; with
    ``dataset="openi"``, the downloaded OpenI copy."""
    from medclip_cli.data import medpix2

    if dataset == "openi":
        return _downloaded_openi()
    root = medpix_download_dir()
    if root.is_dir() and medpix2.detect(root):
        return root
    raise DataNotDownloadedError(
        f"no data set given and MedPix 2.0 is not downloaded (looked in {root})",
        hint="run `medclip data download medpix2`, or pass --data PATH to a local copy",
    )


def _downloaded_openi() -> Path:
    from medclip_cli.data import openi

    root = openi_download_dir()
    if root.is_dir() and openi.detect(root):
        return root
    raise DataNotDownloadedError(
        f"no data set given and OpenI is not downloaded (looked in {root})",
        hint="run `medclip data download openi`, or pass --data PATH to a local copy",
    )
