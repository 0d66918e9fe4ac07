"""A small OpenI-shaped copy: reports in the published XML structure, PNG images made here."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from .conftest import write_png

# The structure of ecgen-radiology/<n>.xml as NLMCXR_reports.tgz publishes it (elements medclip
# does not read are kept, so the parser is tested against the real nesting).
REPORT_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{n}"/>
   <pmcId id="{n}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{n}"/>
   <licenseType>open-access</licenseType>
   <licenseURL>http://creativecommons.org/licenses/by-nc-nd/4.0/</licenseURL>
   <ccLicense>byncnd</ccLicense>
   <articleDate>2013-08-01</articleDate>
   <articleType>XR</articleType>
   <publisher>Indiana University</publisher>
   <title>Indiana University Chest X-ray Collection</title>
   <note>The data are drawn from multiple hospital systems.</note>
   <specialty>pulmonary diseases</specialty>
   <subset>CXR</subset>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <Journal><JournalIssue><PubDate><Year>2013</Year></PubDate></JournalIssue></Journal>
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
            <AbstractText Label="COMPARISON">None.</AbstractText>
            <AbstractText Label="INDICATION">{indication}</AbstractText>
            <AbstractText Label="FINDINGS">{findings}</AbstractText>
            <AbstractText Label="IMPRESSION">{impression}</AbstractText>
         </Abstract>
         <Affiliation>Indiana University</Affiliation>
      </Article>
   </MedlineCitation>
   <MeSH>
{mesh}
   </MeSH>
{images}
</eCitation>
"""

IMAGE_XML = """   <parentImage id="{id}">
      <figureId>F{k}</figureId>
      <caption>Xray Chest PA and Lateral</caption>
      <panel type="single">
         <url>/hadoop/storage/radiology/extract/{id}.jpg</url>
         <imgModality>7</imgModality>
      </panel>
   </parentImage>"""

#: n -> (findings, impression, major terms, image ids). Image names follow the published
#: pattern CXR<n>[_<k>]_IM-<series>-<view>.
REPORTS: dict[int, tuple[str, str, list[str], list[str]]] = {
    1: (
        "The cardiac silhouette and mediastinum size are within normal limits. There is no pulmonary "
        "edema. There is no focal consolidation. There are no XXXX of a pleural effusion.",
        "Normal chest x-XXXX.",
        ["normal"],
        ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"],
    ),
    2: (
        "Borderline cardiomegaly. Midline sternotomy XXXX. Enlarged pulmonary arteries.",
        "Clear lungs. Inferior XXXX XXXX XXXX.",
        ["Cardiomegaly/borderline", "Pulmonary Artery/enlarged"],
        ["CXR2_IM-0652-1001", "CXR2_IM-0652-2001"],
    ),
    3: ("", "No active disease.", ["normal"], ["CXR3_IM-1384-1001", "CXR3_IM-1384-2001"]),
    4: (
        "Mild cardiomegaly. No effusion.",
        "Cardiomegaly without acute process.",
        ["Cardiomegaly/mild", "Cardiomegaly/severe"],
        ["CXR4_IM-2050-1001", "CXR4_IM-2050-2001"],
    ),
    5: (
        "Calcified granuloma in the right upper lobe.",
        "No acute disease.",
        ["Calcified Granuloma/lung/upper lobe/right"],
        ["CXR5_IM-2117-1003002"],
    ),
    6: ("Heart size normal. Lungs clear.", "", ["No Indexing"], ["CXR6_IM-2192-1001", "CXR6_IM-2192-2001"]),
    7: ("XXXX.", "", ["Lung/hypoinflation"], ["CXR7_IM-2263-1001", "CXR7_IM-2263-2001"]),
    8: ("Heart normal.", "Normal chest.", ["normal"], ["CXR8_IM-2333-1001", "CXR8_IM-2333-2001"]),
    9: ("Small left effusion.", "Effusion.", ["Pleural Effusion/left/small"], ["CXR9_IM-2407-1001"]),
    10: ("Hyperinflated lungs.", "COPD.", ["Lung/hyperdistention"], ["CXR10_IM-0002-1001", "CXR10_IM-0002-2001"]),
    11: ("Lungs clear.", "Normal.", ["normal"], []),  # published: some reports have no image
    12: ("Cardiomegaly.", "Enlarged heart.", ["cardiomegaly/moderate"], ["CXR12_IM-0144-1001"]),
}


def report_xml(n: int, findings: str, impression: str, major: list[str], images: list[str]) -> str:
    mesh = "\n".join(f"      <major>{escape(t)}</major>" for t in major) + "\n      <automatic>chest</automatic>"
    return REPORT_XML.format(
        n=n,
        indication="Positive TB test",
        findings=escape(findings),
        impression=escape(impression),
        mesh=mesh,
        images="\n".join(IMAGE_XML.format(id=i, k=k) for k, i in enumerate(images, start=1)),
    )


def write_openi(root: Path, reports: dict | None = None, image_dir: str = "NLMCXR_png") -> Path:
    """``root/ecgen-radiology/<n>.xml`` and ``root/<image_dir>/<id>.png`` (random 40x30 PNGs)."""
    reports = REPORTS if reports is None else reports
    (root / "ecgen-radiology").mkdir(parents=True, exist_ok=True)
    seed = 0
    for n, (findings, impression, major, images) in reports.items():
        (root / "ecgen-radiology" / f"{n}.xml").write_text(report_xml(n, findings, impression, major, images), "utf-8")
        for image in images:
            write_png(root / image_dir / f"{image}.png" if image_dir else root / f"{image}.png", seed)
            seed += 1
    return root
