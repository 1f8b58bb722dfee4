# mcms-op: arr-set-server
# Brings one server of an ARR web farm Online, into Drain or Offline, waits until the ARR
# provider reports the matching runtime state, then reads the whole farm back.
#   Online:  enabled = true in applicationHost.config, then SetState Start (Available).
#   Drain:   SetState Drain ("Disallow New Connections": requests in flight finish, new
#            ones go to the other servers); the configuration is not touched.
#   Offline: SetState GracefulStop (Unavailable; requests in flight still finish), then
#            enabled = false in the configuration. Runtime state does not survive an IIS
#            restart or a recycle of ARR's app pool, the configuration does: a standby
#            server kept out by runtime state alone would silently come back into rotation.
# SetState is given the enum's names (Start, Drain, GracefulStop), never numbers, so no
# numbering can be misread. Writes to applicationHost.config fail transiently while another
# writer holds the file: retried a few times within TimeoutSec, with growing pauses.
param(
    [Parameter(Mandatory = $true)][string]$FarmName,
    [Parameter(Mandatory = $true)][string]$ServerAddress,
    [Parameter(Mandatory = $true)][ValidateSet('Online', 'Drain', 'Offline')][string]$Action,
    [ValidateRange(1, 3600)][int]$TimeoutSec = 30
)
$computer = $env:COMPUTERNAME
$maxAttempts = 4
$null = [Reflection.Assembly]::LoadWithPartialName('Microsoft.Web.Administration')

function Get-StateName($Value) {
    # The counters' state is an enum; Microsoft.Web.Administration hands out its number.
    switch ([string]$Value) {
        '0' { return 'Available' }
        '1' { return 'Drain' }
        '2' { return 'Unavailable' }
        '3' { return 'Unavailable' }
        default { return [string]$Value }
    }
}

function Get-FarmServer($Manager) {
    $section = $Manager.GetApplicationHostConfiguration().GetSection('webFarms')
    $farm = $section.GetCollection() | Where-Object { $_.GetAttributeValue('name') -eq $FarmName } | Select-Object -First 1
    if ($null -eq $farm) {
        throw "web farm '$FarmName' does not exist on $computer; check router.farm in the bot configuration. Nothing was changed"
    }
    $server = $farm.GetCollection() | Where-Object { $_.GetAttributeValue('address') -eq $ServerAddress } | Select-Object -First 1
    if ($null -eq $server) {
        throw "server '$ServerAddress' is not in web farm '$FarmName' on $computer; check router.servers in the bot configuration. Nothing was changed"
    }
    return @{ farm = $farm; server = $server }
}

function Get-Counters($Server) {
    return $Server.GetChildElement('applicationRequestRouting').GetChildElement('counters')
}

function Read-Servers($Farm) {
    $servers = @()
    foreach ($s in $Farm.GetCollection()) {
        $counters = Get-Counters $s
        $raw = $counters.GetAttributeValue('state')
        $servers += [ordered]@{
            address = [string]$s.GetAttributeValue('address')
            enabled = [bool]$s.GetAttributeValue('enabled')
            state = (Get-StateName $raw)
            state_code = [string]$raw
            healthy = [bool]$counters.GetAttributeValue('isHealthy')
            current_requests = [long]$counters.GetAttributeValue('currentRequests')
            total_requests = [long]$counters.GetAttributeValue('totalRequests')
            failed_requests = [long]$counters.GetAttributeValue('failedRequests')
        }
    }
    return , $servers
}

function Read-RuntimeState {
    $found = Get-FarmServer (New-Object Microsoft.Web.Administration.ServerManager)
    return (Get-StateName (Get-Counters $found.server).GetAttributeValue('state'))
}

function Set-Enabled([bool]$Value) {
    $attempts = 0
    $clock = [Diagnostics.Stopwatch]::StartNew()
    while ($true) {
        $attempts++
        try {
            $manager = New-Object Microsoft.Web.Administration.ServerManager
            $found = Get-FarmServer $manager
            if ([bool]$found.server.GetAttributeValue('enabled') -eq $Value) { return }
            $found.server.SetAttributeValue('enabled', $Value)
            $manager.CommitChanges()
            return
        } catch {
            $message = $_.Exception.Message
            $transient = $message -match 'Cannot write configuration file|being used by another process'
            $pause = 250 * $attempts
            $late = $clock.Elapsed.TotalMilliseconds + $pause -gt $TimeoutSec * 1000
            if (-not $transient -or $attempts -ge $maxAttempts -or $late) {
                throw "could not set enabled=$Value on server '$ServerAddress' of web farm '$FarmName' on $computer after $attempts attempt(s): $message If applicationHost.config stays locked, find what holds it (IIS Manager, a backup, antivirus) and retry"
            }
            Start-Sleep -Milliseconds $pause
        }
    }
}

function Set-RuntimeState([string]$NewState) {
    $found = Get-FarmServer (New-Object Microsoft.Web.Administration.ServerManager)
    $arr = $found.server.GetChildElement('applicationRequestRouting')
    $call = $arr.Methods['SetState'].CreateInstance()
    $call.Input.SetAttributeValue('newState', $NewState)
    $call.Execute()
}

$first = Get-FarmServer (New-Object Microsoft.Web.Administration.ServerManager)
$beforeEnabled = [bool]$first.server.GetAttributeValue('enabled')
$beforeState = Get-StateName (Get-Counters $first.server).GetAttributeValue('state')
if ($Action -eq 'Online') {
    Set-Enabled $true
    Set-RuntimeState 'Start'
    $want = 'Available'
} elseif ($Action -eq 'Drain') {
    Set-RuntimeState 'Drain'
    $want = 'Drain'
} else {
    Set-RuntimeState 'GracefulStop'
    Set-Enabled $false
    $want = 'Unavailable'
}
$clock = [Diagnostics.Stopwatch]::StartNew()
$now = Read-RuntimeState
while ($now -ne $want -and $clock.Elapsed.TotalSeconds -lt $TimeoutSec) {
    Start-Sleep -Milliseconds 250
    $now = Read-RuntimeState
}
$last = Get-FarmServer (New-Object Microsoft.Web.Administration.ServerManager)
$r = [ordered]@{
    ok = $true; op = 'arr-set-server'; farm = $FarmName; server = $ServerAddress; action = $Action
    before_enabled = $beforeEnabled; before_state = $beforeState; state = $now; reached = ($now -eq $want)
    servers = (Read-Servers $last.farm)
}
# -Depth: the default of 2 would flatten each server into a string.
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress -Depth 5))
