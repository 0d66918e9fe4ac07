"""The comparison table of several models highlights the best value of each row."""

from __future__ import annotations

from rich.text import Text

from medclip_cli.commands.evaluate import _comparison_table
from medclip_cli.evaluation.results import EvalResult, ModelResult, TaskResult


def _model(label, acc, median_rank):
    tasks = {
        "modality": TaskResult("modality", "classification", {"n_images": 4, "accuracy@1": acc, "accuracy@5": None}, 4, 0),
        "retrieval": TaskResult("retrieval", "retrieval", {"image_to_text_R@1": acc, "image_to_text_median_rank": median_rank}, 4, 0),
    }
    return ModelResult(label, {}, "k", 14.3, False, 0.0, 4, [], tasks)


def _cells(table, row):
    return [column._cells[row] for column in table.columns]


def test_best_value_per_row_is_emphasised_and_lower_median_rank_wins():
    result = EvalResult([_model("a", 0.5, 3.0), _model("b", 0.75, 2.0)], {}, {}, {"seed": 0}, {}, 0.0)
    table = _comparison_table(result, "modality")
    assert [c.header for c in table.columns] == ["metric", "a", "b"]
    name, a, b = _cells(table, 1)
    assert name == "accuracy@1" and not isinstance(a, Text) and isinstance(b, Text) and "bold" in str(b.style)
    assert _cells(table, 2) == ["accuracy@5", "—", "—"]  # undefined for both: nothing highlighted
    retrieval = _comparison_table(result, "retrieval")
    name, a, b = _cells(retrieval, 2)
    assert name == "image_to_text_median_rank" and isinstance(b, Text) and b.plain == "2.0000" and not isinstance(a, Text)
