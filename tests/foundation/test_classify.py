"""``medclip classify`` on real PNGs and DICOMs, and the image loader behind it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medclip_cli.data.images import load_image
from medclip_cli.errors import ImageError


def _dicom(name: str):
    from pydicom.data import get_testdata_file

    return get_testdata_file(name)


def _predictions(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_classify_medpix_png_and_dicoms_json(cli, medpix_root):
    png = next((medpix_root / "MedPix-2-0" / "images").glob("*.png"))
    labels = "brain MRI,chest X-ray,abdominal CT"
    out = _predictions(cli("classify", png, _dicom("CT_small.dcm"), _dicom("MR_small.dcm"), "--labels", labels, "--encoder", "test-vit", "--json"))
    assert [r["image"] for r in out] == [str(png), _dicom("CT_small.dcm"), _dicom("MR_small.dcm")]
    for row in out:
        probs = [p["probability"] for p in row["predictions"]]
        assert sorted(p["label"] for p in row["predictions"]) == sorted(labels.split(","))
        assert sum(probs) == pytest.approx(1.0, abs=1e-9)
        assert probs == sorted(probs, reverse=True)


def test_top_k_and_labels_with_commas(cli, tmp_path):
    image = tmp_path / "scan.png"
    Image.new("L", (40, 50), 90).save(image)
    out = _predictions(
        cli("classify", image, "--label", "CT, with contrast", "--label", "MRI", "--labels", "X-ray,ultrasound", "--top-k", "2", "--encoder", "test-resnet", "--json")
    )
    assert len(out[0]["predictions"]) == 2
    assert {p["label"] for p in out[0]["predictions"]} <= {"CT, with contrast", "MRI", "X-ray", "ultrasound"}


def test_probabilities_use_the_models_logit_scale(cli, tmp_path):
    """With the logit scale set to 1 the probabilities are the softmax of plain cosines."""
    from medclip_cli.evaluation.classify import classify_images
    from medclip_cli.models import resolve_model

    image = tmp_path / "scan.png"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(image)
    model = resolve_model(encoder="test-vit")
    import torch

    with torch.no_grad():
        model.module.logit_scale.fill_(0.0)  # exp(0) = 1
    (result,) = classify_images(model, [image], ["a", "b"], ["{}"])
    probs = dict(result.predictions)
    assert abs(probs["a"] - probs["b"]) < 0.5  # cosines lie in [-1, 1]: softmax gap at scale 1 is bounded
    assert sum(probs.values()) == pytest.approx(1.0)


def test_unreadable_single_image_is_one_line_error(cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    result = cli("classify", bad, "--labels", "a,b", "--encoder", "test-vit")
    assert result.exit_code == 1
    assert str(bad) in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_several_images_one_bad_still_classifies_the_others(cli, tmp_path):
    good = tmp_path / "good.png"
    Image.new("L", (40, 40), 200).save(good)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    result = cli("classify", good, empty, "--labels", "a,b", "--encoder", "test-vit", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert "predictions" in out[0] and out[1] == {"image": str(empty), "error": f"{empty}: empty file (0 bytes)"}


@pytest.mark.parametrize("template", ["no placeholder", ""])
def test_template_without_placeholder_is_a_usage_error(cli, tmp_path, template):
    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    result = cli("classify", image, "--labels", "a,b", "--template", template, "--encoder", "test-vit")
    assert result.exit_code == 2 and "placeholder" in result.stderr


def test_no_labels_is_a_usage_error(cli, tmp_path):
    result = cli("classify", tmp_path / "x.png", "--encoder", "test-vit")
    assert result.exit_code == 2 and "no labels" in result.stderr


def test_sixteen_bit_png_uses_its_real_range(tmp_path):
    values = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "16bit.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (64, 64, 3)
    assert pixels.min() == 0 and pixels.max() == 255  # PIL's own convert("RGB") would saturate at 255
    assert len(np.unique(pixels[..., 0])) > 200


def test_dicom_window_and_monochrome1(tmp_path):
    import pydicom

    path = _dicom("CT_small.dcm")
    narrow = np.asarray(load_image(path, window=(40, 80)))
    wide = np.asarray(load_image(path, window=(40, 4000)))
    assert (narrow == 0).mean() > (wide == 0).mean() or (narrow == 255).mean() > (wide == 255).mean()
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted_path = tmp_path / "mono1.dcm"
    ds.save_as(inverted_path)
    assert np.array_equal(np.asarray(load_image(inverted_path, window=(40, 400))), 255 - np.asarray(load_image(path, window=(40, 400))))


def test_palette_png_with_transparency_and_animated_gif(tmp_path):
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "p.png", transparency=1)
    assert load_image(tmp_path / "p.png").mode == "RGB"
    frames = [Image.new("L", (12, 12), v) for v in (10, 250)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert np.asarray(load_image(tmp_path / "a.gif")).max() <= 20  # the first frame


def test_truncated_and_bomb_images_are_image_errors(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="trunc.png"):
        load_image(tmp_path / "trunc.png")
    # A PNG header that claims 60,000 x 60,000 pixels.
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "bomb.png")
