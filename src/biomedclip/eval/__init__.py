"""Evaluation: retrieval metrics and benchmark protocols."""
