"""Tests of the simulated lab itself."""
