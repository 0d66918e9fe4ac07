"""Issue 17's hostile cases, as rows of the same table (appended to ``CASES`` in cases.py).

They were found from outside, as a new user would try them: small files that decode to gigabytes,
paths that are pipes or devices, manifests written by Python's own ``csv``/``json`` and by pandas,
credentials in a URL, ``--force`` on someone's folder, plugins that exit or print at import.
Behaviour a table row cannot show (a value, a lock, a file that must not appear) is in
``test_hostile.py``.
"""

from __future__ import annotations

from tests.reliability import inputs as make
from tests.reliability import inputs_hostile as bad
from tests.reliability.cases import Case, Env, check, classify, evaluate, finetune

_TOO_LARGE = "image is too large to decode safely"


def _classify_link(env: Env, target: str) -> list[str]:
    return classify(bad.link(env.p("scan.png"), target))


def _medpix_with(env: Env, writer) -> object:
    root = make.medpix_set(env.p("data"), n=4)
    image = root / "MedPix-2-0" / "images" / "MPX1_a.png"
    image.unlink()
    writer(image)
    return root


def _csv_with(env: Env, writer) -> object:
    path = make.csv_set(env.p("data"))
    image = env.p("data") / "img" / "a1.png"
    image.unlink()
    writer(image)
    return path


def _foreign_folder(env: Env) -> object:
    make.write(env.p("mine") / "thesis.txt", "four years of work")
    make.write(env.p("mine") / "results" / "table.csv", "a,b\n1,2\n")
    return env.p("mine")


def _secret_url(env: Env, suffix: str = ".missing") -> None:
    env.serve(b"")
    url = env._server.url.replace("http://", "http://alice:s3cret-token@") + suffix
    env.monkeypatch.setenv("MEDCLIP_MEDPIX_URL", url)


def _plugin(env: Env, name: str, source: str, *command: str) -> list[str]:
    env.plugin(name, source)
    return list(command)


_HOOK_EXITS = bad.plugin_source("""
@hookimpl
def register_encoders(register):
    raise SystemExit(3)
""")

HOSTILE_CASES: list[Case] = [
    # -- images: only regular files, and the header decides before decoding ----------------------
    Case("image-fifo", "images", "a named pipe (FIFO) as the image (never opened)", "classify scan.png --labels a,b",
         lambda env: classify(bad.fifo(env.p("scan.png"))), 1, "scan.png: is a named pipe (FIFO), not a regular file"),
    Case("image-dev-zero", "images", "image path linking to /dev/zero", "classify scan.png --labels a,b",
         lambda env: _classify_link(env, "/dev/zero"), 1, "scan.png: is a device, not a regular file"),
    Case("image-proc-environ", "images", "image path linking to /proc/self/environ", "classify scan.png --labels a,b",
         lambda env: _classify_link(env, "/proc/self/environ"), 1, "scan.png: is a kernel file"),
    Case("image-1x10M-png", "images", "68-byte PNG header of 10,000,000 x 1 pixels (~30 GB once resized)",
         "classify scan.png --labels a,b",
         lambda env: classify(bad.png_header(env.p("scan.png"), 10_000_000, 1)), 1, "aspect ratio of 10,000,000:1"),
    Case("image-16-bit-10900", "images", "16-bit PNG header of 10,900 x 10,900 pixels (5 GB peak)",
         "classify scan.png --labels a,b",
         lambda env: classify(bad.png_header(env.p("scan.png"), 10_900, 10_900, depth=16)), 1, "118,810,000 pixels"),
    Case("image-dicom-deflated-12000", "images", "280 KB deflated DICOM of 12,000 x 12,000 pixels (4.6 GB)",
         "classify scan.dcm --labels a,b",
         lambda env: classify(bad.dicom(env.p("scan.dcm"), 12_000, 12_000, deflated=True)), 1, "144,000,000 pixels"),
    Case("image-dicom-1500-frames", "images", "765 KB deflated DICOM of 1,500 frames (3.2 GB)",
         "classify scan.dcm --labels a,b",
         lambda env: classify(bad.dicom(env.p("scan.dcm"), 512, 512, frames=1_500, deflated=True)), 1, "1,500 frames"),
    Case("image-dicom-frames-limit-raised", "images", "200-frame DICOM with --max-image-frames 300 (middle frame used)",
         "--max-image-frames 300 classify scan.dcm",
         lambda env: ["--max-image-frames", "300", *classify(bad.dicom(env.p("scan.dcm"), 64, 64, frames=200), "--json")],
         0, "probability"),
    Case("image-strip-120-to-1", "images", "a real 1,200 x 10 PNG (aspect 120:1)", "classify strip.png --labels a,b",
         lambda env: classify(bad.strip_png(env.p("strip.png"), 1_200, 10)), 1, "strip.png: image is too large"),
    Case("image-aspect-limit-raised", "images", "the same strip with --max-image-aspect 200", "--max-image-aspect 200 classify strip.png",
         lambda env: ["--max-image-aspect", "200", *classify(bad.strip_png(env.p("strip.png"), 1_200, 10), "--json")],
         0, "probability"),
    Case("image-limit-option-bad", "options", "--max-image-pixels abc", "--max-image-pixels abc classify scan.png",
         lambda env: ["--max-image-pixels", "abc", *classify(make.png(env.p("scan.png")))], 2, "--max-image-pixels"),
    Case("image-limit-env-bad", "options", "MEDCLIP_MAX_IMAGE_BYTES=-5", "classify scan.png (with the variable set)",
         lambda env: (env.monkeypatch.setenv("MEDCLIP_MAX_IMAGE_BYTES", "-5"), classify(make.png(env.p("scan.png"))))[1],
         2, "MEDCLIP_MAX_IMAGE_BYTES '-5'"),
    Case("image-float-tiff-inf", "images", "float TIFF with one +inf and one -inf pixel (not blanked)",
         "classify scan.tif --labels a,b", lambda env: classify(bad.float_tiff_with_inf(env.p("scan.tif")), "--json"),
         0, "probability"),
    Case("image-dicom-rgb-16-bit", "images", "16-bit RGB DICOM (scaled, not wrapped modulo 256)",
         "classify scan.dcm --labels a,b", lambda env: classify(bad.rgb16_dicom(env.p("scan.dcm")), "--json"),
         0, "probability"),
    Case("option-window-nan", "options", "--window 40,nan (a blank image, exit 0, before)", "classify scan.png --window 40,nan",
         lambda env: classify(make.png(env.p("scan.png")), "--window", "40,nan"), 2, "--window '40,nan'"),
    Case("option-window-inf", "options", "--window inf,400", "classify scan.png --window inf,400",
         lambda env: classify(make.png(env.p("scan.png")), "--window", "inf,400"), 2, "must be finite"),
    Case("image-huge-in-checked-set", "images", "data check on a set holding a 1 x 10,000,000 PNG", "data check DIR",
         lambda env: check(_medpix_with(env, lambda p: bad.png_header(p, 10_000_000, 1))), 1,
         "MPX1_a.png: image is too large to decode safely", report=True),
    Case("image-fifo-in-eval-set", "images", "a FIFO among the images of an evaluation set (skipped)",
         "evaluate --data DIR --task modality --json",
         lambda env: evaluate(env, "--json", data=_medpix_with(env, bad.fifo)), 0, "named pipe"),
    Case("image-dev-zero-in-training-set", "images", "an image linking to /dev/zero in a training set (skipped)",
         "finetune --data pairs.csv ...",
         lambda env: finetune(env, data=_csv_with(env, lambda p: bad.link(p, "/dev/zero"))), 0, "skipped 1 unreadable image"),
    Case("image-huge-in-training-set-strict", "images", "a 16-bit 10,900² PNG header in a training set with --strict",
         "finetune --data pairs.csv --strict ...",
         lambda env: finetune(env, "--strict", data=_csv_with(env, lambda p: bad.png_header(p, 10_900, 10_900, 16))), 1,
         "a1.png: image is too large to decode safely", output="run"),
    # -- manifests: what Python's csv/json and pandas write is read back ------------------------
    Case("data-csv-python-writer", "data sets", "csv.DictWriter output; captions with \\n, lone \\r, U+2028, quotes",
         "data check pairs.csv --json", lambda env: check(bad.python_csv(env.p("data")), "--json"), 0, '"samples": 4'),
    Case("data-jsonl-json-dumps", "data sets", "json.dumps(ensure_ascii=False) lines; captions with U+2028, \\x85, \\x0b",
         "data check pairs.jsonl --json", lambda env: check(bad.python_jsonl(env.p("data")), "--json"), 0, '"samples": 4'),
    Case("data-csv-pandas", "data sets", "DataFrame.to_csv output (a lone \\r left unquoted)", "data check pairs.csv --json",
         lambda env: check(bad.pandas_manifest(env.p("data"), "csv"), "--json"), 0, '"samples": 4'),
    Case("data-tsv-pandas", "data sets", "DataFrame.to_csv(sep='\\t') output", "data check pairs.tsv --json",
         lambda env: check(bad.pandas_manifest(env.p("data"), "tsv"), "--json"), 0, '"samples": 4'),
    Case("data-jsonl-pandas", "data sets", "DataFrame.to_json(lines=True, force_ascii=False) output",
         "data check pairs.jsonl --json", lambda env: check(bad.pandas_manifest(env.p("data"), "jsonl"), "--json"), 0,
         '"samples": 4'),
    Case("data-csv-semicolon-captions", "data sets", "comma CSV whose captions are full of semicolons",
         "data check pairs.csv --json",
         lambda env: check(bad.python_csv(env.p("data"), ["a;b;c;d;e"] * 4), "--json"), 0, '"samples": 4'),
    Case("data-csv-200k-caption", "data sets", "200,000-character caption in a CSV (accepted, as in JSONL)",
         "data check pairs.csv --json",
         lambda env: check(bad.python_csv(env.p("data"), ["x" * 200_000, "b", "c", "d"]), "--json"), 0,
         '"truncated_captions": 1'),
    Case("data-csv-field-over-limit", "data sets", "CSV caption of 1,000,001 characters", "data check pairs.csv",
         lambda env: check(bad.python_csv(env.p("data"), ["x" * 1_000_001, "b", "c", "d"])), 1,
         "longer than 1,000,000 characters"),
    Case("data-jsonl-field-over-limit", "data sets", "JSONL caption of 1,000,001 characters (the same limit)",
         "data check pairs.jsonl",
         lambda env: check(bad.python_jsonl(env.p("data"), ["x" * 1_000_001, "b", "c", "d"])), 1,
         "longer than 1,000,000 characters"),
    Case("data-nul-in-image-path", "data sets", "NUL byte inside an image path", "data check pairs.csv",
         lambda env: check(bad.csv_with_image_line(env.p("data"), "img/a\0.png")), 1, "holds a NUL byte; skipped",
         report=True),
    Case("data-nul-in-caption", "data sets", "NUL byte inside a caption (kept as text)", "data check pairs.csv --json",
         lambda env: check(bad.python_csv(env.p("data"), ["a\0b", "b", "c", "d"]), "--json"), 0, '"samples": 4'),
    Case("data-manifest-fifo", "data sets", "a named pipe named pairs.csv (never opened)", "data check pairs.csv",
         lambda env: check(bad.fifo(env.p("pairs.csv"))), 1, "pairs.csv"),
    Case("data-manifest-proc-environ", "data sets", "pairs.csv linking to /proc/self/environ (never read)",
         "data check pairs.csv", lambda env: check(bad.link(env.p("pairs.csv"), "/proc/self/environ")), 1,
         "pairs.csv: is a kernel file"),
    Case("data-labels-file-dev-zero", "data sets", "--labels-file linking to /dev/zero", "data check pairs.csv --labels-file L",
         lambda env: check(make.csv_set(env.p("data")), "--labels-file", str(bad.link(env.p("labels.toml"), "/dev/zero"))),
         1, "labels.toml: is a device"),
    Case("template-file-fifo", "prompt templates", "--prompts naming a FIFO", "evaluate --prompts p.toml",
         lambda env: evaluate(env, "--prompts", str(bad.fifo(env.p("p.toml")))), 2, "p.toml: is a named pipe"),
    # -- downloads -----------------------------------------------------------------------------
    Case("download-force-foreign-folder", "downloads and archives",
         "--force on a folder medclip did not write (thesis.txt, results/ kept)", "data download medpix2 --to mine --force",
         lambda env: ["data", "download", "medpix2", "--to", str(_foreign_folder(env)), "--force"], 1,
         "not a medclip download"),
    Case("download-credentials-in-error", "downloads and archives", "MEDCLIP_MEDPIX_URL with user:token, answering 404",
         "data download medpix2", lambda env: (_secret_url(env), ["data", "download", "medpix2", "--to", str(env.p("mp"))])[1],
         1, "http://***@127.0.0.1", output="mp"),
    # -- plugins -------------------------------------------------------------------------------
    Case("plugin-sys-exit-on-import", "checkpoints and plugins", "plugin calling sys.exit() at import (skipped, named)",
         "encoders 'test-*'", lambda env: _plugin(env, "exit_plugin", "import sys\nsys.exit(0)\n", "encoders", "test-*"),
         0, "plugin 'exit_plugin' from exit_plugin failed to load"),
    Case("plugin-keyboard-interrupt-on-import", "checkpoints and plugins", "plugin raising KeyboardInterrupt at import",
         "encoders 'test-*'",
         lambda env: _plugin(env, "ctrlc_plugin", "raise KeyboardInterrupt\n", "encoders", "test-*"), 0,
         "plugin 'ctrlc_plugin' from ctrlc_plugin failed to load"),
    Case("plugin-prints-on-import", "checkpoints and plugins", "plugin printing at import, with --json (stdout stays JSON)",
         "plugins --json", lambda env: _plugin(env, "chatty_plugin", "print('hello from a plugin')\n", "plugins", "--json"),
         0, '"chatty_plugin"'),
    Case("plugin-hook-sys-exit", "checkpoints and plugins", "plugin whose hook calls SystemExit", "encoders 'test-*'",
         lambda env: _plugin(env, "exiting_hook", _HOOK_EXITS, "encoders", "test-*"), 0,
         "plugin 'exiting_hook' from exiting_hook raised while registering encoders"),
]


# -- run folders, bundles, outputs (after the training-run fixes) ---------------------------------

_HELD: list = []  # locks held by a case's "other process" (flock conflicts within a process too)


def _held_by_another_run(folder) -> str:
    from medclip_cli import runlock

    _HELD.append(runlock.acquire(folder))
    return str(folder)


def _bundle_with(env: Env, edit) -> str:
    import json

    bundle = env.bundle("vit-bundle")
    config_path = bundle / "open_clip_config.json"
    config = json.loads(config_path.read_text())
    edit(bundle, config)
    config_path.write_text(json.dumps(config))
    return str(bundle)


def _nan_weights(bundle, config) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from medclip_cli.models.bundle import _sha256

    state = load_file(str(bundle / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(bundle / "model.safetensors"))
    config["medclip"]["weights_sha256"] = _sha256(bundle / "model.safetensors")  # checksum fine: NaN caught


def _flipped_byte(bundle, config) -> None:
    path = bundle / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))


def _preprocess(**values):
    def edit(bundle, config) -> None:
        config.setdefault("preprocess_cfg", {}).update(values)

    return edit


def _classify_model(env: Env, edit) -> list[str]:
    return ["classify", str(make.png(env.p("scan.png"))), "--labels", "a,b", "--model", _bundle_with(env, edit)]


def _dead_run(env: Env) -> list[str]:
    make.write(env.p("run") / "config.json", '{"config": {}, "plan": {}}')  # killed before checkpoint 1
    return [*finetune(env), "--resume"]


def _earlier_evaluation_with_notes(env: Env) -> list[str]:
    make.write(env.p("eval") / "results.json", "{}")
    make.write(env.p("eval") / "notes.txt", "my notes")
    return evaluate(env, "--output", str(env.p("eval")))


HOSTILE_CASES += [
    Case("run-folder-in-use-finetune", "run folders and results", "finetune --output that another run holds",
         "finetune --output run/ (while another finetune runs there)",
         lambda env: [*finetune(env), "--output", _held_by_another_run(env.p("run"))], 1, "in use by another medclip run (pid"),
    Case("run-folder-in-use-evaluate", "run folders and results", "evaluate --output that another evaluation holds",
         "evaluate --output eval/ (while another evaluation writes there)",
         lambda env: evaluate(env, "--output", _held_by_another_run(env.p("eval"))), 1, "in use by another medclip run (pid"),
    Case("run-folder-in-use-reproduce", "run folders and results", "reproduce --output that another reproduce holds",
         "reproduce --experiment zeroshot-vit-b-32 --output out/",
         lambda env: ["reproduce", "--experiment", "offline-minilm-lit", "--data", _medpix_three_splits(env),
                      "--output", _held_by_another_run(env.p("out")), "--device", "cpu"], 1, "in use by another medclip run"),
    Case("run-dead-before-checkpoint-resume", "run folders and results",
         "--resume of a run killed before its first checkpoint (says how to go on)", "finetune --output run/ --resume",
         _dead_run, 1, "stopped before its first checkpoint"),
    Case("option-seed-too-large", "options", "--seed 100000000000000000000 (too large for NumPy)",
         "finetune --seed 100000000000000000000",
         lambda env: finetune(env, "--seed", str(10**20)), 2, "--seed must be a whole number from 0", output="run"),
    Case("option-output-under-a-file", "options", "finetune --output below a file", "finetune --output taken/run",
         lambda env: [*finetune(env), "--output", str(make.write(env.p("taken"), "a file") / "run")], 1, "taken/run"),
    Case("option-output-in-proc", "options", "finetune --output in /proc", "finetune --output /proc/medclip-run",
         lambda env: [*finetune(env), "--output", "/proc/medclip-run"], 1, "/proc/medclip-run"),
    Case("evaluate-output-with-foreign-files", "run folders and results",
         "evaluate --output of a folder holding someone's notes.txt (nothing deleted)", "evaluate --output eval/",
         _earlier_evaluation_with_notes, 1, "holds files evaluate did not write (notes.txt)"),
    Case("bundle-nan-weight", "checkpoints and plugins", "model bundle with one NaN weight (nan probabilities, exit 0, before)",
         "classify scan.png --model bundle/", lambda env: _classify_model(env, _nan_weights), 1, "holds NaN or infinite values"),
    Case("bundle-checksum-mismatch", "checkpoints and plugins", "model bundle whose weights changed after saving (one byte)",
         "classify scan.png --model bundle/", lambda env: _classify_model(env, _flipped_byte), 1,
         "does not match the checksum its bundle recorded"),
    Case("bundle-zero-std", "checkpoints and plugins", "model bundle whose normalisation std is 0",
         "classify scan.png --model bundle/", lambda env: _classify_model(env, _preprocess(std=[0.0, 0.0, 0.0])), 1,
         "the std must be positive"),
    Case("bundle-unknown-interpolation", "checkpoints and plugins", "model bundle with interpolation 'lanczos9'",
         "classify scan.png --model bundle/", lambda env: _classify_model(env, _preprocess(interpolation="lanczos9")), 1,
         "preprocess_cfg: unknown interpolation 'lanczos9'"),
]


def _download(env: Env, payload: bytes) -> list[str]:
    env.serve(payload)
    return ["data", "download", "medpix2", "--to", str(env.p("mp"))]


HOSTILE_CASES += [
    # found by the fresh hunt after the fixes
    Case("download-file-url", "downloads and archives", "MEDCLIP_MEDPIX_URL=file:///dev/zero (would fill the disk)",
         "data download medpix2",
         lambda env: (env.monkeypatch.setenv("MEDCLIP_MEDPIX_URL", "file:///dev/zero"),
                      ["data", "download", "medpix2", "--to", str(env.p("mp"))])[1], 1,
         "only http:// and https:// URLs are downloaded", output="mp"),
    Case("download-duplicate-member", "downloads and archives", "zip holding the same member name twice",
         "data download medpix2 --to mp",
         lambda env: _download(env, bad.zip_entries([("MedPix-2.0-main/README.md", b"a"), ("MedPix-2.0-main/README.md", b"b")])),
         1, "are the same path; archive refused", output="mp"),
    Case("download-file-folder-clash", "downloads and archives", "zip member inside a path another member holds as a file",
         "data download medpix2 --to mp",
         lambda env: _download(env, bad.zip_entries([("MedPix-2.0-main/a", b"a"), ("MedPix-2.0-main/a/b", b"b")])),
         1, "lies inside the file", output="mp"),
]


def _medpix_three_splits(env: Env) -> str:
    for split in ("train", "dev", "test"):
        make.medpix_set(env.p("data"), split)
    return str(env.p("data"))


def _reproduce_with(env: Env, setting: str) -> list[str]:
    return ["reproduce", "--experiment", "offline-minilm-lit", "--data", _medpix_three_splits(env), "--set", setting,
            "--output", str(env.p("out")), "--device", "cpu"]  # fmt: skip


HOSTILE_CASES += [
    Case("reproduce-val-tasks-a-string", "run folders and results", "reproduce --set finetune.val_tasks=modality (a string)",
         "reproduce --experiment offline-minilm-lit --set finetune.val_tasks=modality",
         lambda env: _reproduce_with(env, "finetune.val_tasks=modality"), 2, "finetune.val_tasks must be a list",
         output="out"),
    Case("reproduce-unknown-prompt-set", "run folders and results", "reproduce --set evaluate.prompts=nope (checked before training)",
         "reproduce --experiment offline-minilm-lit --set evaluate.prompts=nope",
         lambda env: _reproduce_with(env, "evaluate.prompts=nope"), 2, "no such prompt set", output="out"),
]
