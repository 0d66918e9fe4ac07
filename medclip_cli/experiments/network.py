"""What an experiment needs from outside: whether its weights must come from a hub."""

from __future__ import annotations

from pathlib import Path

from medclip_cli.experiments.config import Experiment


def needs_network(experiment: Experiment) -> bool:
    """Whether the experiment's weights must come from a hub (not shipped, not a local path)."""
    from medclip_cli.models.factory import normalize_pretrained

    from medclip_cli.models.sources import hub_name, registered_model

    model = experiment.settings["model"]
    for ref in [model.get("encoder") or "", *(model.get("compare") or [])]:
        if hub_name(ref) is not None or registered_model(ref) is not None:
            return True
    pretrained = normalize_pretrained(model.get("pretrained"))
    if pretrained is not None and not Path(pretrained).exists():
        return True
    text = model.get("text_encoder") or ""
    if text.startswith("hf:") and not Path(text[3:]).is_dir():
        return True
    text_tag = normalize_pretrained(model.get("text_pretrained"))
    return text == "clip-text" and text_tag not in (None, "auto")
