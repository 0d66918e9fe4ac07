"""Fine-tuning: the run (config, loop, checkpoints, resume), its batches, loss, optimiser and
per-epoch validation. Sits above evaluation (validation reuses its zero-shot pieces)."""
