"""A few bad inputs in a real ``medclip`` process: what a user's terminal shows, logging and all."""

from __future__ import annotations

from tests.conftest import run_medclip
from tests.reliability import inputs as make


def test_undecodable_dicom_is_one_line_without_traceback(tmp_path):
    # pydicom logs decoder failures; in a real process nothing but the error line may reach stderr.
    # (MEDCLIP_DEBUG=1 showing the traceback is tested in tests/foundation/test_cli.py.)
    scan = make.dicom_jpeg2000(tmp_path / "scan.dcm")
    args = ("classify", scan, "--labels", "a,b", "--encoder", "test-vit", "--device", "cpu")

    plain = run_medclip(*args)
    assert plain.returncode == 1
    lines = [line for line in plain.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "scan.dcm: cannot decode DICOM" in lines[0], plain.stderr


def test_out_of_range_option_is_a_usage_error_in_a_real_process(tmp_path):
    result = run_medclip("classify", make.png(tmp_path / "s.png"), "--labels", "a,b", "--encoder", "test-vit", "--top-k", "0")
    assert result.returncode == 2
    assert "--top-k" in result.stderr and "unexpected" not in result.stderr and "Traceback" not in result.stderr
