"""Metrics and scoring rules (overlap60 picking metrics, scoring against ground truth)."""
