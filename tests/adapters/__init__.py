"""Tests of the adapters: store, audit, WinRM transport and host operations, smoke, timeline."""
