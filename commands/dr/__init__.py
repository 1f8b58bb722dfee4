"""The DR test matrix (playbook §8): which tests, how each is judged, how they run.

matrix.py   the four tests (DR-SMOKE, DR-AXE, DR-E2E, DR-ZAP) and `check` selections
judge.py    pass/fail from a suite's report (pure), saying so when the exit code disagrees
engine.py   run_dr_tests: these tests, this environment, one folder; cancel and progress
checks.py   the checks running in this process: one per environment, cards, audit, cancel
"""
