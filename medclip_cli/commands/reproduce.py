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
    device: options.Device = "auto",
    as_json: options.Json = False,
) -> None:
    """Run the study's experiments (configs/experiments/*.toml) and write a report.

    Each experiment evaluates its starting model zero-shot, fine-tunes it when the experiment
    says so, evaluates the result on the same tasks, and writes report.md, results.json and
    confusion-matrix pictures under OUTPUT/NAME.

    Examples:

        medclip reproduce --list

        medclip reproduce --experiment best

        medclip reproduce --experiment offline-minilm-lit --data ~/MedPix-2-0 --set finetune.epochs=2
    """
    from medclip_cli.experiments.config import list_experiments, load_experiment, resolve_names

    if list_:
        _show_list(list_experiments(), as_json)
        return
    if experiment is None:
        raise UsageError("no experiment given", hint="pass --experiment NAME, best or all; see --list")
    overrides = list(set_ or [])
    experiments = [load_experiment(name, overrides) for name in resolve_names(experiment)]

    from medclip_cli.experiments.runner import check_experiment, check_finetune_keys

    for exp in experiments:
        check_finetune_keys(exp)
    if data is not None and not data.exists():  # before the first experiment starts, not inside it
        from medclip_cli.errors import DataError

        raise DataError(f"{data}: no such file or folder", hint="check --data")
    for exp in experiments:  # every setting of every experiment, before the first one starts
        check_experiment(exp, data)
    command = " ".join(["medclip", *map(shlex.quote, sys.argv[1:])]) if sys.argv[0].endswith("medclip") else _command(experiment, data, output, overrides)
    from medclip_cli import runlock

    with runlock.hold(output):  # one reproduce per --output at a time, held until its last report
        runs = [_run_one(exp, output / exp.name, data, device, command, as_json) for exp in experiments]
        if len(runs) > 1:
            from medclip_cli.experiments.report import summary_report
            from medclip_cli.experiments.runner import write_text

            write_text(output / "summary.md", summary_report(runs, command))
            if not as_json:
                ui.info(f"summary: {output / 'summary.md'}")
    if as_json:
        from medclip_cli.experiments.runner import results_json

        ui.print_json([results_json(run, command) for run in runs])


def _command(experiment, data, output, overrides) -> str:
    parts = ["medclip", "reproduce", "--experiment", experiment, "--output", str(output)]
    if data is not None:
        parts += ["--data", str(data)]
    for item in overrides:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts)


def _run_one(exp, out: Path, data, device, command, as_json):
    from medclip_cli.evaluation.evaluate import write_outputs
    from medclip_cli.experiments.report import experiment_report
    from medclip_cli.experiments.runner import results_json, run_experiment, write_json, write_text

    import shutil

    from medclip_cli.atomic import replace_dir

    if not as_json:
        ui.info(f"experiment {exp.name}: {exp.settings['experiment']['description']}")
    # The new run is built beside the finished one and replaces it only when complete: a failed
    # or refused re-run changes nothing of the earlier experiment (the caller holds --output's lock).
    staging = out.parent / f".{out.name}.new"
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that died (the lock says none runs)
    try:
        with ui.progress(enabled=not as_json) as reporter:
            run = run_experiment(exp, staging, data=data, device=device, progress=reporter)
        files = write_outputs(run.evaluation, staging / "evaluation")
        pictures = [f for f in files if f.suffix == ".png"]
        write_json(staging / "results.json", _moved(results_json(run, command), staging, out))
        write_text(staging / "report.md", experiment_report(run, command, pictures).replace(str(staging), str(out)))
        replace_dir(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    run.output = out
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


def _moved(data, old: Path, new: Path):
    """``data`` with every path string under ``old`` pointing under ``new`` (the finished folder)."""
    import json

    return json.loads(json.dumps(data, default=str).replace(json.dumps(str(old))[1:-1], json.dumps(str(new))[1:-1]))


def _show_list(experiments, as_json: bool) -> None:
    from medclip_cli.experiments.runner import needs_network

    rows = [
        {
            "name": e.name,
            "tests": e.settings["experiment"]["tests"],
            "encoders": e.encoders,
            "pretrained": e.pretrained_summary,
            "fine-tunes": e.finetune is not None,
            "needs network": needs_network(e),
        }
        for e in experiments
    ]
    if as_json:
        ui.print_json(rows)
        return
    from medclip_cli.experiments.config import aliases

    ui.show(
        ui.table(
            "Experiments (configs/experiments)",
            ["name", "what it tests", "encoders", "weights", "fine-tunes", "needs network"],
            [(r["name"], r["tests"], r["encoders"], r["pretrained"], "yes" if r["fine-tunes"] else "no", "yes" if r["needs network"] else "no") for r in rows],
        )
    )
    names = aliases()
    if names:
        ui.info("aliases: " + ", ".join(f"{k} → {v}" for k, v in names.items()))
