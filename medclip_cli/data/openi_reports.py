"""One OpenI (Indiana University chest X-ray) report: its XML read safely, its caption and labels.

The published layout (``NLMCXR_reports.tgz`` unpacks to ``ecgen-radiology/<n>.xml``)::

    <eCitation>
      <uId id="CXR1"/> <IUXRId id="1"/> ...
      <MedlineCitation><Article><Abstract>
        <AbstractText Label="COMPARISON">...</AbstractText>
        <AbstractText Label="INDICATION">...</AbstractText>
        <AbstractText Label="FINDINGS">...</AbstractText>
        <AbstractText Label="IMPRESSION">...</AbstractText>
      </Abstract></Article></MedlineCitation>
      <MeSH><major>Cardiomegaly/mild</major><automatic>...</automatic></MeSH>
      <parentImage id="CXR1_1_IM-0001-3001"> <figureId/> <caption/> <panel/> </parentImage>
      ...
    </eCitation>

Every file is parsed with defusedxml: entity declarations (the "billion laughs" bomb) and
external references are refused, and files larger than :data:`MAX_REPORT_BYTES` are not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

MAX_REPORT_BYTES = 1 << 20  # a published report is ~3 kB
NORMAL, ABNORMAL = "normal", "abnormal"
#: Major MeSH terms that say nothing about the image: left out of both label fields.
UNINDEXED = {"no indexing"}
#: A de-identification placeholder (``XXXX``) with the letters glued to it (``x-XXXX``).
_PLACEHOLDER = re.compile(r"[\w/-]*XXXX[\w/-]*")
_SAFE_IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Report:
    """What medclip takes from one report file."""

    file: str  # ``12.xml``: the report's key (the split is by file)
    uid: str  # ``CXR12`` (the file stem when the report has no ``<uId>``)
    findings: str
    impression: str
    major: tuple[str, ...]  # MeSH <major> terms as written (``Cardiomegaly/mild``)
    images: tuple[str, ...]  # <parentImage id> values, in document order
    bad_images: tuple[str, ...] = field(default=())  # ids that are not plain file names

    @property
    def caption(self) -> str | None:
        """FINDINGS then IMPRESSION, placeholders dropped (:func:`drop_placeholders`); None if empty."""
        parts = [drop_placeholders(t) for t in (self.findings, self.impression)]
        text = " ".join(p for p in parts if p)
        return text or None

    @property
    def normal(self) -> str | None:
        """``normal`` when the major terms are exactly "normal", ``abnormal`` for any other term,
        None when the report has no (indexed) major term."""
        terms = {t.strip().casefold() for t in self.major} - UNINDEXED - {""}
        if not terms:
            return None
        return NORMAL if terms == {NORMAL} else ABNORMAL

    @property
    def finding_heads(self) -> tuple[str, ...]:
        """The distinct findings of the major terms: each term's part before the first ``/``
        (``Cardiomegaly/mild`` -> ``Cardiomegaly``), "normal" and unindexed terms left out."""
        seen, heads = set(), []
        for term in self.major:
            head = " ".join(term.split("/", 1)[0].split())
            key = head.casefold()
            if head and key not in seen and key not in UNINDEXED and key != NORMAL:
                seen.add(key)
                heads.append(head)
        return tuple(heads)


def drop_placeholders(text: str) -> str:
    """The text without de-identification placeholders.

    The published reports replace removed words by ``XXXX`` (``Normal chest x-XXXX.``, ``There are
    no XXXX of a pleural effusion.``). Each placeholder goes together with the letters, hyphens
    and slashes glued to it (``x-XXXX`` is a redacted word, not "x-"); spaces left before
    punctuation are closed. A text with no letter or digit left is empty.
    """
    text = _PLACEHOLDER.sub(" ", text)
    text = re.sub(r"\s+([.,;:!?])", r"\1", text)
    text = re.sub(r"[.,;:!?](?:\s*([.,;:!?]))+", r"\1", text)  # "opacity, ." after a removal: keep the last
    text = " ".join(text.split())
    return text if re.search(r"[^\W_]", text) else ""


def read_report(path: Path) -> Report | str:
    """The report in ``path``, or a one-line reason it cannot be used."""
    import defusedxml.ElementTree as safe_xml
    from defusedxml import DefusedXmlException
    from xml.etree.ElementTree import ParseError

    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            return f"{size:,} bytes, more than a report can be ({MAX_REPORT_BYTES:,} at most), not read"
        root = safe_xml.parse(path).getroot()
    except DefusedXmlException as exc:
        return f"XML with {_refused(exc)}, refused (an entity-expansion or external-entity attack)"
    except ParseError as exc:
        return f"malformed XML ({exc})"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    uid_node = root.find(".//uId")
    uid = (uid_node.get("id") or "").strip() if uid_node is not None else ""
    sections: dict[str, str] = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").strip().upper()
        text = " ".join("".join(node.itertext()).split())
        if label and text and label not in sections:
            sections[label] = text
    major = tuple(" ".join("".join(n.itertext()).split()) for n in root.iter("major"))
    images, bad = [], []
    for node in root.iter("parentImage"):
        image_id = (node.get("id") or "").strip()
        if _SAFE_IMAGE_ID.fullmatch(image_id):
            images.append(image_id)
        else:
            bad.append(image_id)
    return Report(
        file=path.name,
        uid=uid or path.stem,
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        major=tuple(t for t in major if t),
        images=tuple(images),
        bad_images=tuple(bad),
    )


def _refused(exc: Exception) -> str:
    from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

    if isinstance(exc, EntitiesForbidden):
        return f"an entity declaration ({exc.name!r})"
    if isinstance(exc, ExternalReferenceForbidden):
        return "an external reference"
    if isinstance(exc, DTDForbidden):
        return "a document type declaration"
    return type(exc).__name__
