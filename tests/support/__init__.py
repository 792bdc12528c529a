"""Helpers shared by several test modules (test modules never import each other).

Importable as `support` because tests/conftest.py puts tests/ on sys.path."""
