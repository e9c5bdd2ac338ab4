"""Fixture plugins for tracelet-core's tests, installed as a real distribution with real entry points."""
