# mcms-op: deploy-release
# Makes <ReleasesRoot>\<Version> a whole release folder, then prunes old ones.
# A kept folder whose marker (.mcms-release, written last) holds Sha256 is used as it is.
# Otherwise the package's SHA-256 is verified HERE (the host's copy is what gets expanded),
# expanded into <Version>.tmp, marked, and renamed: a folder named like a version is always
# whole. Pruning keeps the newest KeepCount folders, the protected versions and any folder
# an IIS site or a service's ImagePath points into; a pruned folder is renamed away first,
# so it vanishes at once.
param(
    [Parameter(Mandatory = $true)][string]$Version,
    [Parameter(Mandatory = $true)][string]$Sha256,
    [Parameter(Mandatory = $true)][string]$PackageDir,
    [Parameter(Mandatory = $true)][string]$ReleasesRoot,
    [ValidateRange(1, 100)][int]$KeepCount = 3,
    [string[]]$ProtectVersions = @()
)
Import-Module WebAdministration
$computer = $env:COMPUTERNAME
$marker = '.mcms-release'
$versionPattern = '^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$'
$want = $Sha256.ToLowerInvariant()
$root = [IO.Path]::GetFullPath($ReleasesRoot).TrimEnd('\')
if (-not (Test-Path -LiteralPath $root -PathType Container)) {
    throw "releases root '$root' does not exist on $computer; check releases_root in the bot configuration (the bot does not create it)"
}

function Get-ReleasePath([string]$Name) {
    # Built from the configured root and a validated version only; checked anyway, because
    # a path that resolves outside the root must never be written or deleted.
    $full = [IO.Path]::GetFullPath([IO.Path]::Combine($root, $Name))
    if (-not $full.StartsWith($root + '\', [StringComparison]::OrdinalIgnoreCase)) {
        throw "refused path '$full' on ${computer}: it is not under the releases root '$root'"
    }
    return $full
}

function Read-Marker([string]$Folder) {
    $file = [IO.Path]::Combine($Folder, $marker)
    if (-not (Test-Path -LiteralPath $file -PathType Leaf)) { return '' }
    return ([string](Get-Content -LiteralPath $file -Raw)).Trim().ToLowerInvariant()
}

function Remove-Release([string]$Path) {
    # Rename first: the version-named folder disappears whole or not at all (a locked file
    # makes the rename fail and leaves it intact); a *.del leftover is swept next time.
    $trash = "$Path.del"
    if (Test-Path -LiteralPath $trash) { Remove-Item -LiteralPath $trash -Recurse -Force }
    Rename-Item -LiteralPath $Path -NewName ([IO.Path]::GetFileName($trash))
    Remove-Item -LiteralPath $trash -Recurse -Force -ErrorAction SilentlyContinue
}

$release = Get-ReleasePath $Version
$tmp = Get-ReleasePath "$Version.tmp"
$kept = Test-Path -LiteralPath $release -PathType Container
$copied = $false
$verified = $false
$replaced = $false
if (-not $kept -or (Read-Marker $release) -ne $want) {
    $zip = [IO.Path]::GetFullPath([IO.Path]::Combine($PackageDir, "MCMS_Setup_$Version.zip"))
    if (-not (Test-Path -LiteralPath $zip -PathType Leaf)) {
        throw "package '$zip' is not reachable from $computer; copy MCMS_Setup_$Version.zip there, or check host_package_dir (a UNC share needs CredSSP or Kerberos delegation). Nothing was changed"
    }
    $actual = (Get-FileHash -LiteralPath $zip -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -ne $want) {
        throw "SHA-256 of '$zip' on $computer is $($actual.Substring(0, 12))..., expected $($want.Substring(0, 12))...: the host's copy differs from the verified package (corrupt copy or a changed share). Nothing was changed; re-copy the package and retry"
    }
    $verified = $true
    if (Test-Path -LiteralPath $tmp) { Remove-Item -LiteralPath $tmp -Recurse -Force }
    try {
        Expand-Archive -LiteralPath $zip -DestinationPath $tmp
    } catch {
        throw "expanding '$zip' into '$tmp' on $computer failed: $($_.Exception.Message) The release folder was not touched; check free disk space and the package, then retry"
    }
    # Written last: its presence is what says the folder is whole.
    Set-Content -LiteralPath ([IO.Path]::Combine($tmp, $marker)) -Value $want -Encoding Ascii
    if ($kept) {
        # A kept folder without a valid marker is half-copied or from another build.
        try {
            Remove-Release $release
        } catch {
            throw "release folder '$release' on $computer is incomplete (no valid $marker) and could not be replaced: $($_.Exception.Message). Stop the site or pool using it and retry"
        }
        $replaced = $true
    }
    Rename-Item -LiteralPath $tmp -NewName $Version
    $copied = $true
}

function Get-ReleaseOf([string]$Path) {
    # The release folder a path lies in: D:\MCMS\releases\1.4.1\Portal -> 1.4.1 ('' if none).
    $t = [Environment]::ExpandEnvironmentVariables($Path.Trim().Trim('"'))
    if (-not $t.StartsWith($root + '\', [StringComparison]::OrdinalIgnoreCase)) { return '' }
    return ($t.Substring($root.Length + 1) -split '\\', 2)[0]
}

# Never delete what a site serves from or a service runs from, whatever the caller passed.
$protected = @($Version) + @($ProtectVersions)
foreach ($s in Get-ChildItem -LiteralPath 'IIS:\Sites') {
    $served = Get-ReleaseOf ([string]$s.physicalPath)
    if ($served) { $protected += $served }
}
foreach ($k in Get-ChildItem -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Services' -ErrorAction SilentlyContinue) {
    $image = [string]$k.GetValue('ImagePath', '', 'DoNotExpandEnvironmentNames')
    if ($image) {
        $exe = if ($image.Trim().StartsWith('"')) { $image.Trim().Split('"')[1] } else { ($image.Trim() -split ' ', 2)[0] }
        $used = Get-ReleaseOf $exe
        if ($used) { $protected += $used }
    }
}
Get-ChildItem -LiteralPath $root -Directory -Filter '*.del' |
    ForEach-Object { Remove-Item -LiteralPath $_.FullName -Recurse -Force -ErrorAction SilentlyContinue }
# Same order as the bot's version_key: numeric parts, then a pre-release before its release.
$newestFirst = @(Get-ChildItem -LiteralPath $root -Directory |
    Where-Object { $_.Name -match $versionPattern } |
    Sort-Object -Descending -Property @{ Expression = { [version](($_.Name -split '-', 2)[0]) } },
        @{ Expression = { if ($_.Name.Contains('-')) { 0 } else { 1 } } },
        @{ Expression = { $_.Name } } |
    ForEach-Object { $_.Name })
$removed = @()
$pruneErrors = @()
$remaining = @()
for ($i = 0; $i -lt $newestFirst.Count; $i++) {
    $name = $newestFirst[$i]
    if ($i -lt $KeepCount -or $protected -contains $name) { $remaining += $name; continue }
    try {
        Remove-Release (Get-ReleasePath $name)
        $removed += $name
    } catch {
        # Pruning is housekeeping: a locked old folder must not fail a rollback.
        $pruneErrors += "${name}: $($_.Exception.Message)"
        $remaining += $name
    }
}
$r = [ordered]@{
    ok = $true; op = 'deploy-release'; version = $Version; release_path = $release
    copied = $copied; replaced = $replaced; sha256_verified = $verified; sha256 = $want
    removed = $removed; prune_errors = $pruneErrors; releases = $remaining
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
