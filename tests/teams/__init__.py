"""Tests of the Teams edge (bot/teams/): HTTP, JWT, outbound queue, manifest, browser e2e."""
