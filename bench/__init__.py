"""Benchmarks: run them as scripts (``.venv/bin/python bench/<name>.py``)."""
