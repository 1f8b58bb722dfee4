# mcms-op: service-control
# Starts or stops one Windows service, then waits until the Service Control Manager reports
# Running / Stopped. Uses the non-blocking .NET calls so the wait is bounded by TimeoutSec.
param(
    [Parameter(Mandatory = $true)][string]$Service,
    [Parameter(Mandatory = $true)][ValidateSet('Start', 'Stop')][string]$Action,
    [ValidateRange(1, 3600)][int]$TimeoutSec = 30
)
$svc = Get-Service -Name $Service
$want = if ($Action -eq 'Start') { 'Running' } else { 'Stopped' }
$pending = if ($Action -eq 'Start') { 'StartPending' } else { 'StopPending' }
$before = [string]$svc.Status
$changed = $false
if ($before -ne $want -and $before -ne $pending) {
    if ($Action -eq 'Start') { $svc.Start() } else { Stop-Service -InputObject $svc -Force -NoWait }
    $changed = $true
}
try {
    $svc.WaitForStatus($want, [TimeSpan]::FromSeconds($TimeoutSec))
} catch {
    # A timeout is judged below from the state read back, like every other outcome.
    $null = $_
}
$svc.Refresh()
$now = [string]$svc.Status
$r = [ordered]@{
    ok = $true; op = 'service-control'; name = $Service; action = $Action
    before = $before; state = $now; changed = $changed; reached = ($now -eq $want)
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
