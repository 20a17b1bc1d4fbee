"""Whole-slide pathology at cohort scale: patching, per-slide feature files, slide-level
zero-shot, attention-MIL training and evaluation, heatmaps (``biomedclip slide ...``)."""
