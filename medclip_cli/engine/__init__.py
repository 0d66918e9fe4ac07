"""The shared engine: training, zero-shot classification, metrics. Imports neither typer nor rich."""
