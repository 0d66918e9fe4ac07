"""docs/RELIABILITY.md is the case table rendered from the suite, and says every case passes."""

from __future__ import annotations

from tests.reliability.cases import AREAS, CASES
from tests.reliability.make_doc import DOC, render


def test_every_case_has_a_unique_id_and_a_known_area():
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.area for c in CASES} == set(AREAS)
    assert len(CASES) >= 60


def test_reliability_doc_is_up_to_date():
    expected = render(CASES, passed={c.id for c in CASES})
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == expected, (
        "docs/RELIABILITY.md is out of date: run `python -m tests.reliability.make_doc`"
    )
