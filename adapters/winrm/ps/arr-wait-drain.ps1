# mcms-op: arr-wait-drain
# Waits until one server of an ARR web farm has no request in flight (its currentRequests
# counter reads 0) or TimeoutSec (the drain deadline) passes, then reads the whole farm
# back. It changes nothing: the caller puts the server into Drain first and decides what to
# do when the deadline passed with requests still in flight.
param(
    [Parameter(Mandatory = $true)][string]$FarmName,
    [Parameter(Mandatory = $true)][string]$ServerAddress,
    [ValidateRange(1, 3600)][int]$TimeoutSec = 60
)
$computer = $env:COMPUTERNAME
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

function Get-Farm {
    # A fresh ServerManager each time: the counters are read when the element is loaded.
    $manager = New-Object Microsoft.Web.Administration.ServerManager
    $section = $manager.GetApplicationHostConfiguration().GetSection('webFarms')
    $farm = $section.GetCollection() | Where-Object { $_.GetAttributeValue('name') -eq $FarmName } | Select-Object -First 1
    if ($null -eq $farm) {
        throw "web farm '$FarmName' does not exist on $computer; check router.farm in the bot configuration"
    }
    return $farm
}

function Get-InFlight($Farm) {
    $server = $Farm.GetCollection() | Where-Object { $_.GetAttributeValue('address') -eq $ServerAddress } | Select-Object -First 1
    if ($null -eq $server) {
        throw "server '$ServerAddress' is not in web farm '$FarmName' on $computer; check router.servers in the bot configuration"
    }
    $counters = $server.GetChildElement('applicationRequestRouting').GetChildElement('counters')
    return [long]$counters.GetAttributeValue('currentRequests')
}

$clock = [Diagnostics.Stopwatch]::StartNew()
$inFlight = Get-InFlight (Get-Farm)
while ($inFlight -gt 0 -and $clock.Elapsed.TotalSeconds -lt $TimeoutSec) {
    Start-Sleep -Milliseconds 250
    $inFlight = Get-InFlight (Get-Farm)
}
$waitedMs = [long]$clock.Elapsed.TotalMilliseconds
$servers = @()
foreach ($s in (Get-Farm).GetCollection()) {
    $counters = $s.GetChildElement('applicationRequestRouting').GetChildElement('counters')
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
$r = [ordered]@{
    ok = $true; op = 'arr-wait-drain'; farm = $FarmName; server = $ServerAddress
    drained = ($inFlight -eq 0); current_requests = $inFlight; waited_ms = $waitedMs
    servers = $servers
}
# -Depth: the default of 2 would flatten each server into a string.
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress -Depth 5))
