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
    seeds: Annotated[
        Optional[str],
        typer.Option("--seeds", help="Fine-tune once per seed, e.g. 0,1,2: the report gives each seed and mean ± sd.", show_default=False),
    ] = None,
    bootstrap: Annotated[
        Optional[int],
        typer.Option("--bootstrap", min=0, help="Resamples for each metric's 95 % interval (default 1000; 0: none).", show_default=False),
    ] = None,
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

        medclip reproduce --experiment offline --data ~/MedPix-2-0 --set data.eval_split=dev --seeds 0,1,2
    """
    from medclip_cli.experiments.config import list_experiments, load_experiment, resolve_names

    if list_:
        _show_list(list_experiments(), as_json)
        return
    if experiment is None:
        raise UsageError("no experiment given", hint="pass --experiment NAME, best or all; see --list")
    overrides = list(set_ or [])
    if seeds is not None:
        overrides.append(f"experiment.seeds={_parse_seeds(seeds)}")
    if bootstrap is not None:
        overrides.append(f"evaluate.bootstrap={bootstrap}")
    names = resolve_names(experiment)
    experiments = [load_experiment(name, _overrides_for(name, overrides, len(names) > 1)) for name in names]

    from medclip_cli.experiments.runner import check_experiment, check_finetune_keys

    for exp in experiments:
        check_finetune_keys(exp)
    data_for = _data_for(experiments, data)
    if data is not None and not data.exists():  # before the first experiment starts, not inside it
        from medclip_cli.errors import DataError

        raise DataError(f"{data}: no such file or folder", hint="check --data")
    refused = _check_all(experiments, data_for, check_experiment)
    command = " ".join(["medclip", *map(shlex.quote, sys.argv[1:])]) if sys.argv[0].endswith("medclip") else _command(experiment, data, output, overrides)
    from medclip_cli import runlock

    with runlock.hold(output):  # one reproduce per --output at a time, held until its last report
        if len(experiments) == 1:  # one experiment: its error is the command's error
            runs = [_run_one(experiments[0], output / experiments[0].name, data_for[experiments[0].name], device, command, as_json, resume)]
            if as_json:
                from medclip_cli.experiments.results import results_json

                ui.print_json([results_json(run, command) for run in runs])
            return
        runs, skipped = _run_many(experiments, output, data_for, device, command, as_json, resume, refused)
        from medclip_cli.experiments.report import summary_report
        from medclip_cli.experiments.results import results_json, write_text

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


def _data_for(experiments, data: Path | None) -> dict[str, Path | None]:
    """Which data each experiment reads: --data for those that read its format; with several
    experiments over different data sets, the others read their downloaded copies."""
    formats = {e.name: str(e.settings["data"].get("dataset") or "medpix2") for e in experiments}
    if data is None or len(set(formats.values())) == 1:
        return {e.name: data for e in experiments}
    from medclip_cli.data import resolve_format

    if not data.exists():
        from medclip_cli.errors import DataError

        raise DataError(f"{data}: no such file or folder", hint="check --data")
    given = resolve_format(data).name
    return {name: data if fmt == given else None for name, fmt in formats.items()}


def _needs_download(exc) -> bool:
    from medclip_cli.errors import DataNotDownloadedError, PretrainedUnavailableError

    return isinstance(exc, (PretrainedUnavailableError, DataNotDownloadedError))


def _check_all(experiments, data_for, check_experiment) -> dict[str, tuple[str, str]]:
    """Every setting of every experiment, checked before the first one starts. One experiment: its
    error is the command's error; several: name -> (skipped|failed, reason) for those that cannot
    run (skipped: what they need must be downloaded first)."""
    from medclip_cli.errors import MedclipError

    if len(experiments) == 1:
        check_experiment(experiments[0], data_for[experiments[0].name])
        return {}
    refused = {}
    for exp in experiments:
        try:
            check_experiment(exp, data_for[exp.name])
        except MedclipError as exc:
            refused[exp.name] = ("skipped" if _needs_download(exc) else "failed", ui.one_line(str(exc)))
    return refused


def _run_many(experiments, output: Path, data_for, device, command, as_json, resume, refused):
    """Run every experiment that can run; (name, skipped|failed, reason) for the others (those in
    ``refused`` failed their checks before any experiment started)."""
    from medclip_cli.errors import DataNotDownloadedError, MedclipError, PretrainedUnavailableError

    runs, skipped = [], []
    for exp in experiments:
        if exp.name in refused:
            status, reason = refused[exp.name]
            skipped.append((exp.name, status, reason))
            if not as_json:
                ui.warning(f"experiment {exp.name} {status}: {reason}")
            continue
        try:
            runs.append(_run_one(exp, output / exp.name, data_for[exp.name], device, command, as_json, resume))
        except (PretrainedUnavailableError, DataNotDownloadedError) as exc:
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


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds {text!r}: expected whole numbers separated by commas, e.g. 0,1,2") from None
    out_of_range = [s for s in seeds if not 0 <= s < 2**32]
    if out_of_range:  # refused now, not after the baseline's evaluation
        raise UsageError(f"--seeds {text!r}: {out_of_range[0]} is not a seed from 0 to {2**32 - 1:,}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: give one or more different seeds, e.g. 0,1,2")
    return seeds


def _command(experiment, data, output, overrides) -> str:
    parts = ["medclip", "reproduce", "--experiment", experiment, "--output", str(output)]
    if data is not None:
        parts += ["--data", str(data)]
    for item in overrides:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts)


def _run_one(exp, out: Path, data, device, command, as_json, resume=False):
    from medclip_cli.evaluation.outputs import write_outputs
    from medclip_cli.experiments.figures import save_training_curves_png
    from medclip_cli.experiments.report import cell, experiment_report
    from medclip_cli.experiments.results import results_json, write_json, write_text
    from medclip_cli.experiments.runner import run_experiment

    import shutil

    from medclip_cli.atomic import replace_dir

    if not as_json:
        ui.info(f"experiment {exp.name}: {exp.settings['experiment']['description']}")
    # A finished experiment is replaced only by a complete re-run, built beside it in .NAME.new:
    # a failed or refused re-run changes nothing of it (the caller holds --output's lock). A first
    # or interrupted run works in the folder itself, where --resume finds its checkpoints.
    staged = not resume and (out / "results.json").is_file()
    work = out.parent / f".{out.name}.new" if staged else out
    if staged:
        shutil.rmtree(work, ignore_errors=True)  # left by a run that died (the lock says none runs)
    try:
        with ui.progress(enabled=not as_json) as reporter:
            run = run_experiment(exp, work, data=data, device=device, progress=reporter, resume=resume)
        pictures = []
        for seed_run in run.seed_runs:
            files = write_outputs(seed_run.evaluation, seed_run.output / "evaluation")
            pictures += [f for f in files if f.suffix == ".png"]
        histories = {r.seed: r.train.history for r in run.seed_runs if r.train is not None}
        curves = save_training_curves_png(histories, work / "training_curves.png", exp.name) if histories else None
        write_json(work / "results.json", _moved(results_json(run, command), work, out))
        write_text(work / "report.md", experiment_report(run, command, pictures, curves).replace(str(work), str(out)))
        if staged:
            from medclip_cli.experiments.staging import rebase_paths

            rebase_paths(work, work, out)  # every file names the final folder, not the staging one
            replace_dir(work, out)
    finally:
        if staged:
            shutil.rmtree(work, ignore_errors=True)
    if staged:
        run.output = out
        for seed_run in run.seed_runs:
            seed_run.output = out / seed_run.output.relative_to(work)
    if not as_json:
        rows = [
            (r["task"], r["metric"], r["supervision"], cell(r, "baseline"), cell(r, "fine-tuned"), cell(r, "difference", signed=True))
            for r in run.comparison()
        ]
        seeds = f"mean ± sd of seeds {', '.join(map(str, run.seeds))}" if len(run.seeds) > 1 else "95 % bootstrap intervals"
        title = f"{exp.name} ({run.seconds:.0f} s; {seeds})"
        ui.show(ui.table(title, ["task", "metric", "fine-tuned saw", "baseline", "fine-tuned", "difference"], rows))
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
    from medclip_cli.config_folders import origin
    from medclip_cli.experiments.network import needs_network

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
