# mcms-op: preflight
# Read-only checks before a run stops anything, in one round trip: every component exists,
# the releases root exists, the target release folder is whole (its marker holds Sha256) or
# the package is reachable here with that SHA-256, and the releases volume has RequiredBytes
# free when the package must be expanded. Prints every problem found (none = go), and the
# host's state (as read-state does), which the run keeps to restore it if it fails.
param(
    [string[]]$Sites = @(),
    [string[]]$AppPools = @(),
    [string[]]$Services = @(),
    [Parameter(Mandatory = $true)][string]$ReleasesRoot,
    [Parameter(Mandatory = $true)][string]$Version,
    [Parameter(Mandatory = $true)][string]$Sha256,
    [Parameter(Mandatory = $true)][string]$PackageDir,
    [ValidateRange(0, 9007199254740991)][long]$RequiredBytes = 0
)
Import-Module WebAdministration
$computer = $env:COMPUTERNAME
$problems = @()
$siteStates = @()
foreach ($name in $Sites) {
    $s = [ordered]@{ name = $name; state = 'Missing'; physical_path = $null }
    if (Test-Path -LiteralPath "IIS:\Sites\$name") {
        $s.state = [string](Get-WebsiteState -Name $name).Value
        $s.physical_path = [string](Get-Item -LiteralPath "IIS:\Sites\$name").physicalPath
    } else {
        $problems += "IIS site '$name' does not exist on $computer"
    }
    $siteStates += $s
}
$poolStates = @()
foreach ($name in $AppPools) {
    $p = [ordered]@{ name = $name; state = 'Missing' }
    if (Test-Path -LiteralPath "IIS:\AppPools\$name") {
        $p.state = [string](Get-WebAppPoolState -Name $name).Value
    } else {
        $problems += "IIS application pool '$name' does not exist on $computer"
    }
    $poolStates += $p
}
$serviceStates = @()
foreach ($name in $Services) {
    $v = [ordered]@{ name = $name; state = 'Missing'; image_path = $null }
    $svc = Get-Service -Name $name -ErrorAction SilentlyContinue
    if ($null -ne $svc) {
        $v.state = [string]$svc.Status
        $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$name"
        $v.image_path = [string](Get-ItemProperty -LiteralPath $key -Name ImagePath).ImagePath
    } else {
        $problems += "service '$name' does not exist on $computer"
    }
    $serviceStates += $v
}
$releases = @()
$whole = $false
$verified = $false
$free = $null
$root = [IO.Path]::GetFullPath($ReleasesRoot).TrimEnd('\')
if (-not (Test-Path -LiteralPath $root -PathType Container)) {
    $problems += "releases root '$root' does not exist on $computer; check releases_root in the bot configuration (the bot does not create it)"
} else {
    $releases = @(Get-ChildItem -LiteralPath $root -Directory |
        Where-Object { $_.Name -match '^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$' } |
        ForEach-Object { $_.Name })
    $release = [IO.Path]::GetFullPath([IO.Path]::Combine($root, $Version))
    $marker = [IO.Path]::Combine($release, '.mcms-release')
    if (Test-Path -LiteralPath $marker -PathType Leaf) {
        $whole = ([string](Get-Content -LiteralPath $marker -Raw)).Trim().ToLowerInvariant() -eq $Sha256.ToLowerInvariant()
    }
    $free = [long]([IO.DriveInfo]::new([IO.Path]::GetPathRoot($root)).AvailableFreeSpace)
    if (-not $whole) {
        $zip = [IO.Path]::GetFullPath([IO.Path]::Combine($PackageDir, "MCMS_Setup_$Version.zip"))
        if (-not (Test-Path -LiteralPath $zip -PathType Leaf)) {
            $problems += "package '$zip' is not reachable from $computer (and release $Version is not kept whole there); copy MCMS_Setup_$Version.zip there, or check host_package_dir"
        } else {
            $actual = (Get-FileHash -LiteralPath $zip -Algorithm SHA256).Hash.ToLowerInvariant()
            if ($actual -ne $Sha256.ToLowerInvariant()) {
                $problems += "SHA-256 of '$zip' on $computer is $($actual.Substring(0, 12))..., expected $($Sha256.Substring(0, 12).ToLowerInvariant())...: the host's copy differs from the verified package; re-copy it"
            } else {
                $verified = $true
            }
        }
        if ($free -lt $RequiredBytes) {
            $problems += "only $([math]::Floor($free / 1048576)) MB free on the releases volume of $computer, $([math]::Ceiling($RequiredBytes / 1048576)) MB needed to expand $Version; free some space"
        }
    }
}
$r = [ordered]@{
    ok = $true; op = 'preflight'; problems = $problems
    sites = $siteStates; pools = $poolStates; services = $serviceStates; releases = $releases
    release_whole = $whole; package_verified = $verified; free_bytes = $free
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress -Depth 4))
