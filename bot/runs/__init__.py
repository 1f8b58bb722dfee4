"""Runs: the executor, the steps of a plan, the records of a run, recovery after a restart
and the expiry of pending approvals. Talks to chat only through bot/ports.py.
"""
