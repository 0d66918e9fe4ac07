"""Hook specifications: what a medclip plugin can provide."""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("medclip")


@hookspec
def register_encoders(register: Callable) -> None:
    """Register named encoders by calling ``register(EncoderSpec(...))`` once per encoder.

    :param register: callback taking a :class:`medclip_cli.encoders.EncoderSpec`.
    """


@hookspec
def register_encoder_namespaces(register: Callable) -> None:
    """Register a family of encoders named ``prefix:<name>`` (e.g. every timm model).

    :param register: callback taking a :class:`medclip_cli.encoders.EncoderNamespace`.
    """


@hookspec
def register_datasets(register: Callable) -> None:
    """Register data-set formats by calling ``register(DatasetFormat(...))``.

    :param register: callback taking a :class:`medclip_cli.data.DatasetFormat`.
    """
