# mcms-op: site-control
# Starts or stops one IIS site, then waits until IIS really reports the wanted state.
# Checks first, so a site already in that state is left alone (changed = false).
param(
    [Parameter(Mandatory = $true)][string]$Site,
    [Parameter(Mandatory = $true)][ValidateSet('Start', 'Stop')][string]$Action,
    [ValidateRange(1, 3600)][int]$TimeoutSec = 30
)
Import-Module WebAdministration
if (-not (Test-Path -LiteralPath "IIS:\Sites\$Site")) {
    throw "IIS site '$Site' does not exist on $env:COMPUTERNAME"
}
$want = if ($Action -eq 'Start') { 'Started' } else { 'Stopped' }
$pending = if ($Action -eq 'Start') { 'Starting' } else { 'Stopping' }
$before = [string](Get-WebsiteState -Name $Site).Value
$changed = $false
if ($before -ne $want -and $before -ne $pending) {
    if ($Action -eq 'Start') { Start-Website -Name $Site } else { Stop-Website -Name $Site }
    $changed = $true
}
$clock = [Diagnostics.Stopwatch]::StartNew()
$now = [string](Get-WebsiteState -Name $Site).Value
while ($now -ne $want -and $clock.Elapsed.TotalSeconds -lt $TimeoutSec) {
    Start-Sleep -Milliseconds 250
    $now = [string](Get-WebsiteState -Name $Site).Value
}
$r = [ordered]@{
    ok = $true; op = 'site-control'; name = $Site; action = $Action
    before = $before; state = $now; changed = $changed; reached = ($now -eq $want)
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
