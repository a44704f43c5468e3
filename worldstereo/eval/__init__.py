"""Evaluation: image metrics, ground-truth visibility, GGM reconstruction, camera-following errors and
the memory ablation (``worldstereo eval`` / ``python -m worldstereo.eval``)."""
