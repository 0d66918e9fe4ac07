"""``classify`` at 80 columns: the image path stays whole, above its table."""

from __future__ import annotations

from PIL import Image

from medclip_cli import ui


def test_long_image_path_is_not_folded_at_80_columns(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = "scans/patient_0001/axial_slice_042_with_contrast_enhancement.png"  # 63 characters
    (tmp_path / relative).parent.mkdir(parents=True)
    Image.new("L", (40, 40), 90).save(tmp_path / relative)
    monkeypatch.setattr(ui.console, "width", 80)
    result = cli("classify", relative, "--labels", "brain MRI,chest X-ray,abdominal CT", "--encoder", "test-vit")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert relative in lines  # one line of its own, not folded to the table's width
    assert all(len(line) <= 80 for line in lines)
    table = lines[lines.index(relative) + 1 :]
    assert any("brain MRI" in line and "0." in line for line in table)
