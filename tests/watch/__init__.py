"""Tests of watching (bot/watch/): watcher, alerts, OpsGenie, Grafana, metrics, retention."""
