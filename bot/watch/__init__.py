"""Watching: the smoke watcher, alerts (Teams, OpsGenie, webhooks), Grafana inbound,
/metrics and log housekeeping.
"""
