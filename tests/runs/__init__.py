"""Tests of runs (bot/runs/): rollback/deploy end to end against the lab, bad paths, restarts."""
