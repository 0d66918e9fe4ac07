"""``medclip reproduce``: the study's experiments from config files, with a report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from medclip_cli import options, ui
from medclip_cli.errors import UsageError


def reproduce(
    experiment: Annotated[
        Optional[str],
        typer.Option("--experiment", "-x", help="Experiment name, an alias such as best, or all.", show_default=False),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the experiments and exit.")] = False,
    data: options.Data = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where runs and reports go.")] = Path("runs/reproduce"),
    set_: Annotated[
        Optional[List[str]],
        typer.Option("--set", help="Override a config key: SECTION.KEY=VALUE, e.g. finetune.epochs=1 (repeat).", show_default=False),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint, then finish the experiment.")
    ] = False,
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Run the study's experiments (configs/experiments/*.toml) and write a report.

    Each experiment evaluates its starting model zero-shot, fine-tunes it when the experiment
    says so, evaluates the result on the same tasks, and writes report.md, results.json and
    confusion-matrix pictures under OUTPUT/NAME. After Ctrl-C (or a kill), the same command with
    --resume continues the fine-tune from its last checkpoint. With several experiments (all, an
    alias), one that cannot run (weights not downloadable here, a failure) is reported as skipped
    with its reason and the others run; the exit code is 1 when any was skipped or failed.
    Your own experiments (see --config-dir) are listed and run with the built-in ones.

    Examples:

        medclip reproduce --list

        medclip reproduce --experiment best

        medclip reproduce --experiment offline-minilm-lit --data ~/MedPix-2-0 --set finetune.epochs=2

        medclip reproduce --experiment offline-minilm-lit --resume
    """
    from medclip_cli.experiments.config import list_experiments, load_experiment, resolve_names

    if list_:
        _show_list(list_experiments(), as_json)
        return
    if experiment is None:
        raise UsageError("no experiment given", hint="pass --experiment NAME, best or all; see --list")
    overrides = list(set_ or [])
    names = resolve_names(experiment)
    experiments = [load_experiment(name, _overrides_for(name, overrides, len(names) > 1)) for name in names]

    from medclip_cli.experiments.runner import check_finetune_keys

    for exp in experiments:
        check_finetune_keys(exp)
    formats = sorted({str(e.settings["data"].get("dataset") or "medpix2") for e in experiments})
    if data is not None and len(formats) > 1:
        raise UsageError(
            f"--data: these experiments read different data sets ({', '.join(formats)}), so one --data cannot serve them",
            hint="leave --data out to use the downloaded copies, or run the experiments one at a time",
        )
    if data is not None and not data.exists():  # before the first experiment starts, not inside it
        from medclip_cli.errors import DataError

        raise DataError(f"{data}: no such file or folder", hint="check --data")
    command = " ".join(["medclip", *map(shlex.quote, sys.argv[1:])]) if sys.argv[0].endswith("medclip") else _command(experiment, data, output, overrides)
    if len(experiments) == 1:  # one experiment: its error is the command's error
        runs = [_run_one(experiments[0], output / experiments[0].name, data, device, command, as_json, resume)]
        if as_json:
            from medclip_cli.experiments.runner import results_json

            ui.print_json([results_json(run, command) for run in runs])
        return
    runs, skipped = _run_many(experiments, output, data, device, command, as_json, resume)
    from medclip_cli.experiments.report import summary_report
    from medclip_cli.experiments.runner import results_json, write_text

    write_text(output / "summary.md", summary_report(runs, command, skipped))
    if as_json:
        ui.print_json(
            [results_json(run, command) for run in runs]
            + [{"experiment": name, "status": status, "reason": reason} for name, status, reason in skipped]
        )
    else:
        ui.info(f"summary: {output / 'summary.md'}")
        if skipped:
            ui.show(ui.table("Not run", ["experiment", "status", "reason"], skipped))
    if skipped:
        raise typer.Exit(1)


def _overrides_for(name: str, overrides: list[str], several: bool) -> list[str]:
    """With several experiments, ``--set finetune.*`` applies to those that fine-tune."""
    if not several or not any(o.strip().startswith("finetune.") for o in overrides):
        return overrides
    from medclip_cli.experiments.config import load_experiment

    if load_experiment(name).finetune is not None:
        return overrides
    return [o for o in overrides if not o.strip().startswith("finetune.")]


def _run_many(experiments, output: Path, data, device, command, as_json, resume):
    """Run every experiment that can run; (name, skipped|failed, reason) for the others."""
    from medclip_cli.errors import MedclipError, PretrainedUnavailableError

    runs, skipped = [], []
    for exp in experiments:
        try:
            runs.append(_run_one(exp, output / exp.name, data, device, command, as_json, resume))
        except PretrainedUnavailableError as exc:
            skipped.append((exp.name, "skipped", ui.one_line(str(exc))))
        except MedclipError as exc:
            if exc.exit_code == 130:  # Ctrl-C during a fine-tune: stop everything (then --resume)
                raise
            skipped.append((exp.name, "failed", ui.one_line(str(exc))))
        else:
            continue
        if not as_json:
            ui.warning(f"experiment {exp.name} {skipped[-1][1]}: {skipped[-1][2]}")
    return runs, skipped


def _command(experiment, data, output, overrides) -> str:
    parts = ["medclip", "reproduce", "--experiment", experiment, "--output", str(output)]
    if data is not None:
        parts += ["--data", str(data)]
    for item in overrides:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts)


def _run_one(exp, out: Path, data, device, command, as_json, resume=False):
    from medclip_cli.evaluation.evaluate import write_outputs
    from medclip_cli.experiments.report import experiment_report
    from medclip_cli.experiments.runner import results_json, run_experiment, write_json, write_text

    if not as_json:
        ui.info(f"experiment {exp.name}: {exp.settings['experiment']['description']}")
    with ui.progress(enabled=not as_json) as reporter:
        run = run_experiment(exp, out, data=data, device=device, progress=reporter, resume=resume)
    files = write_outputs(run.evaluation, out / "evaluation")
    pictures = [f for f in files if f.suffix == ".png"]
    write_json(out / "results.json", results_json(run, command))
    write_text(out / "report.md", experiment_report(run, command, pictures))
    if not as_json:
        rows = [
            (r["task"], r["metric"], r["baseline"], r["fine-tuned"], None if r["difference"] is None else f"{r['difference']:+.4f}")
            for r in run.comparison()
        ]
        ui.show(ui.table(f"{exp.name} ({run.seconds:.0f} s)", ["task", "metric", "baseline", "fine-tuned", "difference"], rows))
        if run.probe is not None:
            from medclip_cli.commands.probe import probe_table

            for name, task in run.probe["tasks"].items():
                ui.show(probe_table(name, task))
        ui.info(f"report: {out / 'report.md'}")
    return run


def _show_list(experiments, as_json: bool) -> None:
    from medclip_cli.config_folders import origin
    from medclip_cli.experiments.runner import needs_network

    rows = [
        {
            "name": e.name,
            "tests": e.settings["experiment"]["tests"],
            "encoders": e.encoders,
            "pretrained": e.pretrained_summary,
            "fine-tunes": e.finetune is not None,
            "needs network": needs_network(e),
            "from": origin(e.path),
            "file": str(e.path),
        }
        for e in experiments
    ]
    if as_json:
        ui.print_json(rows)
        return
    from medclip_cli.config_folders import user_config_dir
    from medclip_cli.experiments.config import aliases

    ui.show(
        ui.table(
            f"Experiments (built-in, and yours in {user_config_dir() / 'experiments'})",
            ["name", "what it tests", "encoders", "weights", "fine-tunes", "needs network", "from"],
            [
                (r["name"], r["tests"], r["encoders"], r["pretrained"], "yes" if r["fine-tunes"] else "no", "yes" if r["needs network"] else "no", r["from"])
                for r in rows
            ],
        )
    )
    names = aliases()
    if names:
        ui.info("aliases: " + ", ".join(f"{k} → {' + '.join(v) if isinstance(v, list) else v}" for k, v in names.items()))
