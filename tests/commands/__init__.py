"""Tests of the commands: parsing, config, targets, chat commands."""
