"""The Teams app package's files: the template, the icons and the vendored JSON schemas.

This directory stays at the top of the repository and ships in the wheel as the package
`bot.teams.app_manifest` (pyproject.toml maps it), where `bot/teams/manifest.py` reads it
with importlib.resources. Nothing here is imported as code; `make_icons.py` is the script
that draws the icons.
"""
