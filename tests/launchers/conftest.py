"""Fixtures of the launcher tests (defined in support.py)."""

from tests.launchers.support import ray_head

__all__ = ["ray_head"]
