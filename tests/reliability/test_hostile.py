"""Issue 17's hostile cases whose outcome a table row cannot show: values, files that must not
appear, JSON that must stay valid, secrets that must not be written anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability import inputs as make
from tests.reliability import inputs_hostile as bad


def test_download_force_replaces_only_a_folder_medclip_wrote(cli, tmp_path, monkeypatch, archive_server):
    from medclip_cli.data.download import RECORD_NAME
    from tests.data.test_download import medpix_zip

    archive_server.payload, archive_server.cut_after = medpix_zip(tmp_path / "zip"), None
    monkeypatch.setenv("MEDCLIP_MEDPIX_URL", archive_server.url)
    mp = tmp_path / "mp"
    assert cli("data", "download", "medpix2", "--to", mp).exit_code == 0
    record = json.loads((mp / RECORD_NAME).read_text())
    assert record["written_by"] == "medclip data download"
    (mp / "stale.txt").write_text("from the earlier copy")
    assert cli("data", "download", "medpix2", "--to", mp, "--force").exit_code == 0
    assert not (mp / "stale.txt").exists()  # its own folder is replaced whole

    mine = tmp_path / "mine"
    (mine / "results").mkdir(parents=True)
    (mine / "thesis.txt").write_text("four years")
    (mine / RECORD_NAME).mkdir()  # a folder of that name is no record medclip wrote
    result = cli("data", "download", "medpix2", "--to", mine, "--force")
    assert result.exit_code == 1 and "not a medclip download" in result.stderr
    assert (mine / "thesis.txt").read_text() == "four years" and (mine / "results").is_dir()


def test_credentials_in_the_url_are_used_but_never_shown_or_stored(cli, tmp_path, monkeypatch, archive_server):
    from medclip_cli.data.download import RECORD_NAME
    from medclip_cli.data.home import medclip_home
    from tests.data.test_download import medpix_zip

    archive_server.payload, archive_server.cut_after = medpix_zip(tmp_path / "zip"), None
    url = archive_server.url.replace("http://", "http://alice:s3cret-token@")
    monkeypatch.setenv("MEDCLIP_MEDPIX_URL", url)
    result = cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--json")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and json.loads(result.stdout)["url"].startswith("http://***@127.0.0.1")
    written = [p for root in (tmp_path / "mp", medclip_home()) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == RECORD_NAME for p in written)
    assert not [p for p in written if b"s3cret" in p.read_bytes()], "a credential was written to disk"
    again = cli("data", "download", "medpix2", "--to", tmp_path / "mp", "--json")
    assert again.exit_code == 0 and "s3cret" not in again.output and json.loads(again.stdout)["reused"]


def test_redact_masks_userinfo_and_secret_query_values():
    from medclip_cli.redact import redact

    assert redact("get https://u:p@h.org/x?token=abc&page=2 failed") == "get https://***@h.org/x?token=***&page=2 failed"
    assert redact("ftp://tok@host/a") == "ftp://***@host/a"
    assert redact("a plain message about a=b") == "a plain message about a=b"


def test_error_lines_quote_only_a_short_excerpt(cli, tmp_path):
    header = ",".join(f"column_{i}_{'x' * 50}" for i in range(2_000))
    path = make.write(tmp_path / "wide.csv", header + "\n" + ",".join("v" * 2_000) + "\n")
    result = cli("data", "check", path)
    assert result.exit_code == 1
    assert len(result.stderr.strip()) < 700 and result.stderr.strip().endswith("…")


def test_inf_pixels_do_not_blank_a_float_tiff(tmp_path):
    from medclip_cli.data.images import load_image

    gray = np.asarray(load_image(bad.float_tiff_with_inf(tmp_path / "scan.tif")))[..., 0].astype(int)
    assert gray[3, 3] == 255 and gray[5, 5] == 0  # +inf brightest, -inf darkest
    ramp = np.delete(gray.ravel(), [3 * 40 + 3, 5 * 40 + 5])
    assert ramp.min() <= 1 and ramp.max() >= 254 and np.all(np.diff(ramp) >= 0)  # the gradient survives


def test_16_bit_colour_dicom_is_scaled_not_wrapped(tmp_path):
    from medclip_cli.data.images import load_image

    rgb = np.asarray(load_image(bad.rgb16_dicom(tmp_path / "scan.dcm"))).astype(float)
    stored = (np.arange(16 * 16 * 3).reshape(16, 16, 3) * 85 % 65_536).astype(float)
    assert np.abs(rgb - np.rint(stored * 255 / 65_535)).max() <= 1


def test_a_same_size_rewrite_with_its_mtime_restored_is_decoded_again(tmp_path):
    from medclip_cli.data import load_dataset
    from medclip_cli.data.pixels import load_pixels
    from medclip_cli.data.preprocess import PreprocessConfig

    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    for i in range(2):  # BMP: a file's size depends only on its geometry
        Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(root / "img" / f"a{i}.bmp")
    manifest = make.write(root / "pairs.csv", "image,caption\nimg/a0.bmp,one\nimg/a1.bmp,two\n")
    preprocess = PreprocessConfig(image_size=32)
    first = np.array(load_pixels(load_dataset(manifest, "all"), preprocess).array)
    target = root / "img" / "a0.bmp"
    stat = target.stat()
    size = target.stat().st_size
    Image.new("RGB", (32, 32), (200, 200, 200)).save(target)
    assert target.stat().st_size == size
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the mtime of the old content
    second = np.array(load_pixels(load_dataset(manifest, "all"), preprocess).array)
    assert first[0].mean() < 50 and second[0].mean() > 150, "the cache served the old pixels"


def test_no_cache_reads_and_writes_no_pixel_cache(cli, tmp_path):
    from medclip_cli.data.cache import pixels_dir

    data = make.medpix_set(tmp_path / "data")
    result = cli("evaluate", "--data", data, "--split", "test", "--encoder", "test-vit", "--task", "modality",
                 "--device", "cpu", "--no-cache", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not pixels_dir().exists()


@pytest.mark.parametrize("source", ["print('hello from a plugin')\n", "import sys\nsys.stdout.write('{oops')\n"])
def test_a_plugin_printing_at_import_leaves_json_valid(cli, tmp_path, monkeypatch, fresh_plugins, source):
    from medclip_cli import plugins

    monkeypatch.syspath_prepend(str(make.fake_plugin(tmp_path / "site", "chatty_plugin", source)))
    plugins.reset()
    for command in (["plugins", "--json"], ["encoders", "test-*", "--json"]):
        result = cli(*command)
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)


def test_a_run_lock_names_its_holder_and_dies_with_it(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from medclip_cli import runlock
    from medclip_cli.errors import OutputError

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from medclip_cli import runlock; "
         f"runlock.acquire({str(tmp_path / 'run')!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"in use by another medclip run \(pid {holder.pid} on "):
            runlock.acquire(tmp_path / "run")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    lock = None
    while lock is None:  # the kernel freed it with the process: no stale lock to remove
        try:
            lock = runlock.acquire(tmp_path / "run")
        except OutputError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    lock.release()
    assert not (tmp_path / "run" / runlock.LOCK_NAME).exists()


def test_evaluate_output_holds_one_run(cli, tmp_path):
    data = make.medpix_set(tmp_path / "data")
    base = ["evaluate", "--data", data, "--split", "test", "--encoder", "test-vit", "--device", "cpu", "--output",
            tmp_path / "eval"]  # fmt: skip
    assert cli(*base, "--task", "modality").exit_code == 0
    first = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert "predictions_modality.csv" in first
    assert cli(*base, "--task", "retrieval").exit_code == 0
    second = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert second == ["predictions_retrieval.csv", "results.json"], second  # nothing of the first run is left


def test_names_that_reduce_to_one_file_name_stay_apart():
    from medclip_cli.evaluation.outputs import unique_names

    names = unique_names(["Modalität", "Modalitåt", "plane"])
    assert len(set(names.values())) == 3 and names["plane"] == "plane"


def test_latest_pointing_outside_the_run_is_not_followed(tmp_path):
    from medclip_cli.training import checkpoint as ckpt

    root = tmp_path / "run" / ckpt.CHECKPOINT_DIR
    (root / "step-00000002").mkdir(parents=True)
    (root / "step-00000002" / ckpt.STATE_NAME).write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ckpt.STATE_NAME).write_bytes(b"x")
    for pointer in ("../../elsewhere", str(elsewhere), "step-00000002/../../../elsewhere"):
        (root / ckpt.LATEST).write_text(pointer + "\n")
        assert ckpt.find_checkpoint(tmp_path / "run") == root / "step-00000002"
    (root / "step-00000009").symlink_to(elsewhere)  # a step folder that is a link out of the run
    assert ckpt.find_checkpoint(tmp_path / "run") == root / "step-00000002"


def _finetune(data, out, *extra):
    return ["finetune", "--encoder", "test-vit", "--data", str(data), "--output", str(out), "--val-split", "none",
            "--batch-size", "2", "--device", "cpu", "--checkpoint-every", "1", *extra]  # fmt: skip


def test_resume_without_config_json_checks_the_checkpoint_and_never_loops(tmp_path):
    from tests.conftest import run_medclip

    data = make.csv_set(tmp_path / "data")
    run = tmp_path / "run"
    assert run_medclip(*_finetune(data, run, "--epochs", "1")).returncode == 0
    (run / "config.json").unlink()
    resumed = run_medclip("finetune", "--output", run, "--resume", "--epochs", "3", timeout=120)
    assert resumed.returncode != 0 and "--epochs is 3 but the run" in resumed.stderr, resumed.stderr
    again = run_medclip("finetune", "--output", os.path.relpath(run), "--resume", "--epochs", "1", timeout=120)
    assert again.returncode == 0, again.stderr  # the same folder, spelled relative, resumes


def test_a_run_that_died_before_its_first_checkpoint_is_started_again(cli, tmp_path):
    data = make.csv_set(tmp_path / "data")
    run = tmp_path / "run"
    make.write(run / "config.json", '{"config": {}, "plan": {}}')
    make.write(run / "metrics.jsonl", '{"type": "train", "step": 1}\n')
    result = cli(*_finetune(data, run, "--epochs", "1", "--max-steps", "1"))
    assert result.exit_code == 0, result.output
    assert '{"type": "train", "step": 1}' not in (run / "metrics.jsonl").read_text().splitlines()  # leftovers went
    assert (run / "last").is_dir()
