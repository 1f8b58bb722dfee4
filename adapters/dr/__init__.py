"""The DR test runners (playbook §8) and the reports they leave.

outcome.py  what one run of a suite left: how it ended, its exit code, its report
local.py    run a suite on the bot's own host: its own process group, killed whole
remote.py   run a suite on a Windows runner host over WinRM (adapters/winrm/ps/run-dr-test.ps1)
reports.py  axe results JSON, JUnit XML, ZAP JSON → typed summaries (pure)
artifacts.py the run's folder under artifacts/offline/logs/dr/<run-id>/
"""
