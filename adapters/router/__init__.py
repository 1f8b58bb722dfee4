"""The traffic router in front of a slot pair: which slot's servers get production traffic.

farm.py holds the shapes every router answers with (a farm of servers, each with its
configured `enabled`, runtime state and request counters) and the `TrafficRouter` protocol;
arr.py is the IIS Application Request Routing implementation, driven over WinRM by the
constant scripts in adapters/winrm/ps/arr-*.ps1. Another router (DNS, a cloud load
balancer) is one more implementation of the same protocol.
"""
