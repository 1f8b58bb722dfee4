# mcms-op: pool-control
# Starts, stops or recycles one IIS application pool, then waits until IIS reports the
# wanted state (Started after Start/Recycle, Stopped after Stop). Recycling a stopped pool
# is a success that changes nothing (playbook section 4: a fully stopped service is
# redeployed): nothing runs to recycle, and starting it here would be a surprise.
param(
    [Parameter(Mandatory = $true)][string]$AppPool,
    [Parameter(Mandatory = $true)][ValidateSet('Start', 'Stop', 'Recycle')][string]$Action,
    [ValidateRange(1, 3600)][int]$TimeoutSec = 30
)
Import-Module WebAdministration
if (-not (Test-Path -LiteralPath "IIS:\AppPools\$AppPool")) {
    throw "IIS application pool '$AppPool' does not exist on $env:COMPUTERNAME"
}
$want = if ($Action -eq 'Stop') { 'Stopped' } else { 'Started' }
$pending = if ($Action -eq 'Stop') { 'Stopping' } else { 'Starting' }
$before = [string](Get-WebAppPoolState -Name $AppPool).Value
$changed = $false
if ($Action -eq 'Recycle') {
    if ($before -eq 'Started') {
        Restart-WebAppPool -Name $AppPool
        $changed = $true
    } elseif ($before -ne 'Starting') {
        # Stopped or stopping: wait for Stopped, recycle nothing.
        $want = 'Stopped'
    }
} elseif ($before -ne $want -and $before -ne $pending) {
    if ($Action -eq 'Start') { Start-WebAppPool -Name $AppPool } else { Stop-WebAppPool -Name $AppPool }
    $changed = $true
}
$clock = [Diagnostics.Stopwatch]::StartNew()
$now = [string](Get-WebAppPoolState -Name $AppPool).Value
while ($now -ne $want -and $clock.Elapsed.TotalSeconds -lt $TimeoutSec) {
    Start-Sleep -Milliseconds 250
    $now = [string](Get-WebAppPoolState -Name $AppPool).Value
}
$r = [ordered]@{
    ok = $true; op = 'pool-control'; name = $AppPool; action = $Action
    before = $before; state = $now; wanted = $want; changed = $changed; reached = ($now -eq $want)
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
