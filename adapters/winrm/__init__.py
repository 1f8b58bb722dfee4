"""Windows hosts over WinRM: the transport (transport.py), the constant PowerShell scripts
and how they are composed (scripts.py, ps/), and the IIS/service operations on top
(hostops.py).

Nothing is imported here: commands/ reads `hostops` types without loading pywinrm.
"""
