"""The Teams edge: HTTP in, authentication, activities in, replies, proactive sends and
edits out through the outbound queue, card clicks, and the Teams app package.

The only room that imports botbuilder. It reaches runs and watching only through the
interfaces the wiring (bot/server.py) passes in (bot/ports.py).
"""
