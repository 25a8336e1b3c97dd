"""Servers the contract suites run their backends against."""

from tests.seaweed import seaweed

__all__ = ["seaweed"]
