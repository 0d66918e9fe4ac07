"""The ``medclip`` command: builds the Typer app and registers every command explicitly."""

from __future__ import annotations

import contextvars
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from medclip_cli import __version__, ui
from medclip_cli.errors import MedclipError

DEBUG_ENV = "MEDCLIP_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    ui.warning(str(message))


def _is_click_error(exc: Exception) -> bool:
    # Typer carries its own copy of click (typer._click): a usage error such as `--top-k 0`
    # raises typer._click's BadParameter, which Typer itself prints as a usage error (exit 2).
    module = type(exc).__module__
    return module.startswith(("click.", "typer._click."))


class _ErrorBoundary(TyperGroup):
    """Turns known errors into one red line and an exit code; MEDCLIP_DEBUG=1 shows tracebacks."""

    def invoke(self, ctx):
        previous = warnings.showwarning
        if not debug_enabled():
            warnings.showwarning = _show_warning
        try:
            # In a context of its own: what a command sets there (its flags' spelling,
            # medclip_cli/flags.py) ends with it.
            return contextvars.copy_context().run(super().invoke, ctx)
        except MedclipError as exc:
            if debug_enabled():
                traceback.print_exc()
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _quiet_broken_pipe()
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if debug_enabled():
                raise
            if _is_click_error(exc):
                raise
            ui.error(
                f"unexpected {type(exc).__name__}: {exc} "
                f"(run again with {DEBUG_ENV}=1 for the traceback, and please report it)"
            )
            raise typer.Exit(1) from None
        finally:
            warnings.showwarning = previous


def _quiet_broken_pipe() -> None:
    # The reader went away (`medclip ... | head`): stop quietly, as shell tools do.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(141)


app = typer.Typer(
    name="medclip",
    cls=_ErrorBoundary,
    help="Assess and improve CLIP-style image-text models on medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medclip {__version__}")
        raise typer.Exit()


def _limit_option(name: str):
    from medclip_cli.data import limits  # light: no numpy, no torch

    limit = {lim.option: lim for lim in limits.ALL}[name]
    return typer.Option(
        None, name, show_default=False, envvar=None,
        help=f"Refuse images over this many {limit.what} before decoding them (default {limit.default:,g}; "
        f"also {limit.env}).",
    )  # fmt: skip


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    max_image_pixels: str = _limit_option("--max-image-pixels"),
    max_image_aspect: str = _limit_option("--max-image-aspect"),
    max_image_frames: str = _limit_option("--max-image-frames"),
    max_image_bytes: str = _limit_option("--max-image-bytes"),
    config_dir: Optional[Path] = typer.Option(
        None,
        "--config-dir",
        envvar="MEDCLIP_CONFIG_DIR",
        help="Your own experiments/, labels/ and prompts/ (listed with the built-in ones; yours win on a name). "
        "Default: the user config folder, e.g. ~/.config/medclip.",
        show_default=False,
    ),
) -> None:
    """Assess and improve CLIP-style image-text models on medical images."""
    from medclip_cli.data import limits

    given = zip(limits.ALL, (max_image_pixels, max_image_aspect, max_image_frames, max_image_bytes))
    for limit, text in given:
        if text is not None:  # checked here; set for this process and every worker it starts
            os.environ[limit.env] = str(limits.parse(limit, text))
    if config_dir is not None:
        # An environment variable, so DDP workers and other subprocesses see the same folder.
        os.environ["MEDCLIP_CONFIG_DIR"] = str(config_dir.expanduser().resolve())


def _register() -> None:
    # Command modules import only typer and medclip's light modules; torch loads inside the commands.
    from medclip_cli.commands import (
        classify, data, embed, encoders, evaluate, explain, finetune, plugins, probe, reproduce, search, weights,
    )  # fmt: skip

    app.command("finetune")(finetune.finetune)
    app.command("evaluate")(evaluate.evaluate)
    app.command("classify")(classify.classify)
    app.command("explain")(explain.explain)
    app.command("reproduce")(reproduce.reproduce)
    app.command("embed")(embed.embed)
    app.command("probe")(probe.probe)
    app.command("search")(search.search)
    app.add_typer(data.app, name="data")
    app.command("encoders")(encoders.encoders)
    app.command("plugins")(plugins.plugins)
    app.add_typer(weights.app, name="weights")


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="medclip")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
