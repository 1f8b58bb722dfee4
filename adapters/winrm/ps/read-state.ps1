# mcms-op: read-state
# Reads everything a plan needs to know about one host in one round trip:
# site, app pool and service states, the site's physicalPath and the kept release folders.
param(
    [Parameter(Mandatory = $true)][string]$Site,
    [Parameter(Mandatory = $true)][string]$AppPool,
    [Parameter(Mandatory = $true)][string]$Service,
    [Parameter(Mandatory = $true)][string]$ReleasesRoot
)
Import-Module WebAdministration
$r = [ordered]@{
    ok = $true; op = 'read-state'
    site_state = 'Missing'; pool_state = 'Missing'; service_state = 'Missing'
    physical_path = $null; releases = @()
}
if (Test-Path -LiteralPath "IIS:\Sites\$Site") {
    $r.site_state = [string](Get-WebsiteState -Name $Site).Value
    $r.physical_path = [string](Get-Item -LiteralPath "IIS:\Sites\$Site").physicalPath
}
if (Test-Path -LiteralPath "IIS:\AppPools\$AppPool") {
    $r.pool_state = [string](Get-WebAppPoolState -Name $AppPool).Value
}
# A missing service is a state to report, not an error to throw.
$svc = Get-Service -Name $Service -ErrorAction SilentlyContinue
if ($null -ne $svc) { $r.service_state = [string]$svc.Status }
if (Test-Path -LiteralPath $ReleasesRoot -PathType Container) {
    # Half-expanded folders (*.tmp) and strays are not releases: only version-named folders count.
    $r.releases = @(Get-ChildItem -LiteralPath $ReleasesRoot -Directory |
        Where-Object { $_.Name -match '^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$' } |
        ForEach-Object { $_.Name })
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
