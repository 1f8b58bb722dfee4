# mcms-op: read-state
# Reads everything a plan needs to know about one host in one round trip: every site's
# state and physicalPath, every app pool's state, every service's state and ImagePath,
# and the kept release folders. A missing component is reported as 'Missing', not thrown.
param(
    [string[]]$Sites = @(),
    [string[]]$AppPools = @(),
    [string[]]$Services = @(),
    [Parameter(Mandatory = $true)][string]$ReleasesRoot
)
Import-Module WebAdministration
$siteStates = @()
foreach ($name in $Sites) {
    $s = [ordered]@{ name = $name; state = 'Missing'; physical_path = $null }
    if (Test-Path -LiteralPath "IIS:\Sites\$name") {
        $s.state = [string](Get-WebsiteState -Name $name).Value
        $s.physical_path = [string](Get-Item -LiteralPath "IIS:\Sites\$name").physicalPath
    }
    $siteStates += $s
}
$poolStates = @()
foreach ($name in $AppPools) {
    $p = [ordered]@{ name = $name; state = 'Missing' }
    if (Test-Path -LiteralPath "IIS:\AppPools\$name") {
        $p.state = [string](Get-WebAppPoolState -Name $name).Value
    }
    $poolStates += $p
}
$serviceStates = @()
foreach ($name in $Services) {
    $v = [ordered]@{ name = $name; state = 'Missing'; image_path = $null }
    $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
    if ($null -ne $svc) {
        $v.state = [string]$svc.Status
        # The binary the SCM starts: what a rollback of the service's release switches.
        $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$name"
        $v.image_path = [string](Get-ItemProperty -LiteralPath $key -Name ImagePath).ImagePath
    }
    $serviceStates += $v
}
$releases = @()
if (Test-Path -LiteralPath $ReleasesRoot -PathType Container) {
    # Half-expanded folders (*.tmp) and strays are not releases: only version-named folders count.
    $releases = @(Get-ChildItem -LiteralPath $ReleasesRoot -Directory |
        Where-Object { $_.Name -match '^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$' } |
        ForEach-Object { $_.Name })
}
$r = [ordered]@{
    ok = $true; op = 'read-state'
    sites = $siteStates; pools = $poolStates; services = $serviceStates; releases = $releases
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress -Depth 4))
