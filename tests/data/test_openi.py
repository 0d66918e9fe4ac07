"""The OpenI (Indiana University chest X-ray) format on a small copy in the published structure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medclip_cli.data import list_splits, load_dataset, resolve_format
from medclip_cli.data.openi_reports import drop_placeholders
from medclip_cli.data.openi_split import MANIFEST_NAME, assign_splits
from medclip_cli.errors import DataError

from .openi_copy import REPORTS, report_xml, write_openi


@pytest.fixture
def openi_root(tmp_path) -> Path:
    return write_openi(tmp_path / "openi")


def _by_id(root: Path, split: str = "all") -> dict:
    return {s.id: s for s in load_dataset(root, split).samples}


def test_detected_before_image_folders_and_from_the_reports_folder(openi_root):
    assert resolve_format(openi_root).name == "openi"  # NLMCXR_png/ would also look like a class folder
    assert resolve_format(openi_root / "ecgen-radiology").name == "openi"
    assert list_splits(openi_root) == ["train", "dev", "test", "all"]
    assert load_dataset(openi_root / "ecgen-radiology", "all").root == openi_root


def test_each_image_is_paired_with_findings_then_impression(openi_root):
    samples = _by_id(openi_root)
    # 12 reports; report 11 names no image, so 19 images in all.
    assert len(samples) == sum(len(r[3]) for r in REPORTS.values()) == 19
    first, lateral = samples["CXR1_1_IM-0001-3001"], samples["CXR1_1_IM-0001-4001"]
    assert first.image == openi_root / "NLMCXR_png" / "CXR1_1_IM-0001-3001.png"
    assert first.caption == lateral.caption == (
        "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary edema. "
        "There is no focal consolidation. There are no of a pleural effusion. Normal chest."
    )
    assert samples["CXR3_IM-1384-1001"].caption == "No active disease."  # empty FINDINGS skipped
    assert samples["CXR6_IM-2192-1001"].caption == "Heart size normal. Lungs clear."  # empty IMPRESSION
    assert samples["CXR7_IM-2263-1001"].caption is None  # only a placeholder: no caption
    assert samples["CXR2_IM-0652-2001"].caption == (
        "Borderline cardiomegaly. Midline sternotomy. Enlarged pulmonary arteries. Clear lungs. Inferior."
    )
    assert first.labels["report"] == "CXR1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Normal chest x-XXXX.", "Normal chest."),
        ("There are no XXXX of a pleural effusion.", "There are no of a pleural effusion."),
        ("Inferior XXXX XXXX XXXX.", "Inferior."),
        ("XXXX. XXXX.", ""),
        ("Stable XXXX/XXXX opacity, XXXX.", "Stable opacity."),
        ("No XXXX, no effusion.", "No, no effusion."),
        ("Clear lungs.", "Clear lungs."),
    ],
)
def test_deidentification_placeholders_are_dropped_with_the_word_they_replace(text, expected):
    assert drop_placeholders(text) == expected


def test_normal_is_exactly_the_major_term_normal(openi_root):
    samples = _by_id(openi_root)
    normal = {s.id for s in samples.values() if s.labels.get("normal") == "normal"}
    abnormal = {s.labels["report"] for s in samples.values() if s.labels.get("normal") == "abnormal"}
    assert {samples[i].labels["report"] for i in normal} == {"CXR1", "CXR3", "CXR8"}
    assert abnormal == {"CXR2", "CXR4", "CXR5", "CXR7", "CXR9", "CXR10", "CXR12"}
    assert "normal" not in samples["CXR6_IM-2192-1001"].labels  # "No Indexing": left out
    field = load_dataset(openi_root, "train").label_fields["normal"]
    assert field.classes == ("normal", "abnormal") and field.readable_name("normal") == "a normal chest"


def test_finding_is_the_single_finding_among_the_most_frequent(openi_root):
    samples = _by_id(openi_root)
    findings = {s.labels["report"]: s.labels.get("finding") for s in samples.values()}
    assert findings == {
        "CXR1": None,  # normal: not a finding
        "CXR2": None,  # two findings (Cardiomegaly, Pulmonary Artery)
        "CXR3": None,
        "CXR4": "Cardiomegaly",  # two terms, one finding
        "CXR5": "Calcified Granuloma",
        "CXR6": None,
        "CXR7": "Lung",  # Lung/hypoinflation: the part before "/"
        "CXR8": None,
        "CXR9": "Pleural Effusion",
        "CXR10": "Lung",
        "CXR12": "Cardiomegaly",  # "cardiomegaly/moderate": matched case-insensitively
    }
    field = load_dataset(openi_root, "dev").label_fields["finding"]
    # Every split has the same classes, ordered by how many reports have that finding alone.
    assert field.classes == ("Cardiomegaly", "Lung", "Calcified Granuloma", "Pleural Effusion")
    assert field.readable_name("Lung") == "an abnormal lung"  # from configs/labels/openi.toml
    manifest = json.loads((openi_root / MANIFEST_NAME).read_text())
    assert manifest["single_finding_counts"] == {"Cardiomegaly": 2, "Lung": 2, "Calcified Granuloma": 1, "Pleural Effusion": 1}
    assert manifest["finding_counts"]["Cardiomegaly"] == 3 and manifest["finding_counts"]["Pulmonary Artery"] == 1


def test_most_frequent_in_the_labels_file_limits_the_finding_classes(openi_root, tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "configs", configs)
    toml = configs / "labels" / "openi.toml"
    toml.write_text(toml.read_text().replace("most_frequent = 10", "most_frequent = 2"))
    monkeypatch.setenv("MEDCLIP_CONFIG_DIR", str(configs))
    samples = _by_id(openi_root)
    assert load_dataset(openi_root, "train").label_fields["finding"].classes == ("Cardiomegaly", "Lung")
    assert "finding" not in samples["CXR5_IM-2117-1003002"].labels  # Calcified Granuloma: not among the 2


# --- the split by report ----------------------------------------------------------------------


def test_split_rule_gives_the_same_membership_everywhere():
    names = [f"{n}.xml" for n in range(1, 41)]
    split_of = assign_splits(names)
    by_split = {s: [n for n in names if split_of[n] == s] for s in ("train", "dev", "test")}
    assert [len(v) for v in by_split.values()] == [32, 4, 4]
    # Fixed by sha256 of "0:<file name>" (checked with coreutils: printf '0:4.xml' | sha256sum,
    # sorted): the same on every machine and Python version.
    assert by_split["dev"] == ["4.xml", "17.xml", "23.xml", "40.xml"]
    assert by_split["test"] == ["7.xml", "9.xml", "22.xml", "39.xml"]
    assert assign_splits(reversed(names)) == split_of
    assert assign_splits(names, seed=1) != split_of


def test_frontal_and_lateral_images_of_a_report_share_a_split(openi_root):
    reports_of = {}
    for split in ("train", "dev", "test"):
        for sample in load_dataset(openi_root, split).samples:
            reports_of.setdefault(sample.labels["report"], set()).add(split)
    assert all(len(splits) == 1 for splits in reports_of.values())
    assert len(reports_of) == 11  # every report with an image is in exactly one split
    assert {r for r, s in reports_of.items() if s == {"dev"}} == {"CXR9"}
    assert {r for r, s in reports_of.items() if s == {"test"}} == {"CXR7"}
    sizes = [len(load_dataset(openi_root, s)) for s in ("train", "dev", "test", "all")]
    assert sizes == [16, 1, 2, 19]


def test_the_manifest_keeps_the_split_when_reports_are_added(openi_root):
    before = {s: [x.id for x in load_dataset(openi_root, s).samples] for s in ("train", "dev", "test")}
    manifest = json.loads((openi_root / MANIFEST_NAME).read_text())
    assert manifest["split"]["reports"]["dev"] == ["9.xml"] and manifest["split"]["seed"] == 0
    (openi_root / "ecgen-radiology" / "13.xml").write_text(report_xml(13, "Clear.", "Normal.", ["normal"], []))
    after = load_dataset(openi_root, "train")
    assert [x.id for x in after.samples] == before["train"]
    assert after.problems == [
        f"ecgen-radiology/13.xml: not in {MANIFEST_NAME}, so in no split; skipped "
        "(delete the manifest to split every report again)"
    ]
    assert load_dataset(openi_root, "dev").problems == []  # listed once, with train
    (openi_root / MANIFEST_NAME).unlink()  # written again: the same rule, now over 13 reports
    assert load_dataset(openi_root, "train").problems == []


def test_a_read_only_copy_gets_the_same_split_without_a_manifest(openi_root, tmp_path, monkeypatch):
    expected = {s: [x.id for x in load_dataset(openi_root, s).samples] for s in ("train", "dev", "test")}
    copy = write_openi(tmp_path / "readonly")

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr("medclip_cli.atomic.write_text_atomic", refuse)
    for split, ids in expected.items():
        assert [x.id for x in load_dataset(copy, split).samples] == ids
    assert not (copy / MANIFEST_NAME).exists()


def test_damaged_manifest_is_one_clear_error(openi_root):
    load_dataset(openi_root, "train")
    (openi_root / MANIFEST_NAME).write_text('{"format": "openi", "version": 1, "split": {}}')
    with pytest.raises(DataError) as info:
        load_dataset(openi_root, "dev")
    assert f"{MANIFEST_NAME}: not a valid OpenI manifest" in str(info.value) and "delete" in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_split_names_the_available_ones(openi_root):
    with pytest.raises(DataError, match=r"has no split 'val' \(available: train, dev, test, all\)"):
        load_dataset(openi_root, "val")


# --- bad input: one line each, the rest still loads -------------------------------------------

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<eCitation><uId id="CXR20"/><AbstractText Label="FINDINGS">&lol3;</AbstractText>
<parentImage id="CXR1_1_IM-0001-3001"/></eCitation>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<eCitation><AbstractText Label="FINDINGS">&secret;</AbstractText></eCitation>
"""


def test_bad_reports_are_skipped_with_one_line_each(openi_root):
    reports = openi_root / "ecgen-radiology"
    (openi_root / "NLMCXR_png" / "CXR4_IM-2050-2001.png").unlink()
    (reports / "20.xml").write_text(BOMB)
    (reports / "21.xml").write_text(EXTERNAL)
    (reports / "22.xml").write_text(report_xml(22, "Clear.", "Normal.", ["normal"], ["CXR22_IM-0001-1001"])[:400])
    (reports / "23.xml").write_text(report_xml(23, "Clear.", "Normal.", ["normal"], ["../../etc/passwd"]))
    (reports / "24.xml").write_bytes(b"<eCitation>" + b" " * (1 << 20) + b"</eCitation>")
    dataset = load_dataset(openi_root, "all")
    problems = "\n".join(dataset.problems)
    assert len(dataset.problems) == 6, problems
    assert (
        "ecgen-radiology/4.xml: names image CXR4_IM-2050-2001, but NLMCXR_png/CXR4_IM-2050-2001.png does not exist; skipped"
        in dataset.problems
    )
    assert "ecgen-radiology/20.xml: XML with an entity declaration ('lol')" in problems
    assert "ecgen-radiology/21.xml: XML with an entity declaration ('secret')" in problems
    assert "ecgen-radiology/22.xml: malformed XML (" in problems
    assert "ecgen-radiology/23.xml: image id '../../etc/passwd' is not a plain file name; skipped" in problems
    assert "ecgen-radiology/24.xml: 1,048,599 bytes, more than a report can be (1,048,576 at most), not read; skipped" in problems
    ids = {s.id for s in dataset.samples}
    assert len(ids) == 18 and "CXR4_IM-2050-1001" in ids and "CXR4_IM-2050-2001" not in ids
    assert all("\n" not in p for p in dataset.problems)


def test_images_may_lie_in_images_or_beside_the_reports(tmp_path):
    for image_dir in ("images", ""):
        root = write_openi(tmp_path / (image_dir or "flat"), image_dir=image_dir)
        dataset = load_dataset(root, "all")
        assert len(dataset) == 19 and dataset.problems == []
        assert dataset.samples[0].image.parent == (root / image_dir if image_dir else root)


def test_folder_without_reports_is_not_openi(tmp_path):
    (tmp_path / "x" / "ecgen-radiology").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no .xml report"):
        load_dataset(tmp_path / "x", "train", "openi")
    with pytest.raises(DataError, match="not an OpenI folder"):
        load_dataset(tmp_path, "train", "openi")


def test_an_image_named_by_two_reports_is_kept_once(openi_root):
    (openi_root / "ecgen-radiology" / "14.xml").write_text(
        report_xml(14, "Clear.", "Normal.", ["normal"], ["CXR1_1_IM-0001-3001"]).replace('<uId id="CXR14"/>', "")
    )
    (openi_root / MANIFEST_NAME).unlink(missing_ok=True)
    dataset = load_dataset(openi_root, "all")
    assert [s.labels["report"] for s in dataset.samples if s.id == "CXR1_1_IM-0001-3001"] == ["CXR1"]
    assert dataset.problems == ["ecgen-radiology/14.xml: image CXR1_1_IM-0001-3001 is named by an earlier report too; skipped"]
