"""Benchmarks of the dashboard against its own database: ``python -m bench``.

BENCHMARKS.md describes each figure, its baseline and the latest results.
"""
