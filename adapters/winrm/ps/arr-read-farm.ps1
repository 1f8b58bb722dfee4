# mcms-op: arr-read-farm
# Reads one ARR web farm on this front host in one round trip: per server its configured
# `enabled` (applicationHost.config, webFarms section) and the ARR provider's runtime
# counters (state, health, current / total / failed requests). Runtime state is not
# configuration: it is only reachable through ServerManager's counters element.
param(
    [Parameter(Mandatory = $true)][string]$FarmName
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

$manager = New-Object Microsoft.Web.Administration.ServerManager
$section = $manager.GetApplicationHostConfiguration().GetSection('webFarms')
$farm = $section.GetCollection() | Where-Object { $_.GetAttributeValue('name') -eq $FarmName } | Select-Object -First 1
if ($null -eq $farm) {
    throw "web farm '$FarmName' does not exist on $computer; check router.farm in the bot configuration (IIS Manager > Server Farms lists the farms)"
}
$servers = @()
foreach ($server in $farm.GetCollection()) {
    $counters = $server.GetChildElement('applicationRequestRouting').GetChildElement('counters')
    $raw = $counters.GetAttributeValue('state')
    $servers += [ordered]@{
        address = [string]$server.GetAttributeValue('address')
        enabled = [bool]$server.GetAttributeValue('enabled')
        state = (Get-StateName $raw)
        state_code = [string]$raw
        healthy = [bool]$counters.GetAttributeValue('isHealthy')
        current_requests = [long]$counters.GetAttributeValue('currentRequests')
        total_requests = [long]$counters.GetAttributeValue('totalRequests')
        failed_requests = [long]$counters.GetAttributeValue('failedRequests')
    }
}
$r = [ordered]@{ ok = $true; op = 'arr-read-farm'; farm = $FarmName; servers = $servers }
# -Depth: the default of 2 would flatten each server into a string.
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress -Depth 5))
