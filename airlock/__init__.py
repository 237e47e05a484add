"""Airlock: shared plain data and the command line.

Nothing in this package may import FastAPI, SQLAlchemy or the ``api`` package at module level:
workers import it too.
"""
