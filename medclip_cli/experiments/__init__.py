"""Experiments: named, versioned runs (baseline, fine-tune, evaluate) and their reports (`medclip reproduce`)."""
