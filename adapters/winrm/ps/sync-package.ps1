# mcms-op: sync-package
# Makes this host's package folder (PackageDir, the share the host deploys from) hold
# MCMS_Setup_<Version>.zip with the SHA-256 the bot verified: kept as it is when it already
# matches; else copied from SourceDir (the package store as this host sees it) into a
# temporary name, hashed HERE, and renamed over the old copy only when it matches. A copy
# that does not match is deleted and the folder is left as it was.
param(
    [Parameter(Mandatory = $true)][string]$Version,
    [Parameter(Mandatory = $true)][string]$Sha256,
    [Parameter(Mandatory = $true)][string]$SourceDir,
    [Parameter(Mandatory = $true)][string]$PackageDir,
    [ValidateRange(1, 3600)][int]$TimeoutSec = 600
)
$computer = $env:COMPUTERNAME
$want = $Sha256.ToLowerInvariant()
$name = "MCMS_Setup_$Version.zip"
$dest = [IO.Path]::Combine($PackageDir, $name)
$source = [IO.Path]::Combine($SourceDir, $name)
$before = $null
if (Test-Path -LiteralPath $dest -PathType Leaf) {
    $before = (Get-FileHash -LiteralPath $dest -Algorithm SHA256).Hash.ToLowerInvariant()
}
$copied = $false
if ($before -ne $want) {
    if (-not (Test-Path -LiteralPath $PackageDir -PathType Container)) {
        throw "package folder '$PackageDir' is not reachable from $computer; check host_package_dir (a UNC share needs CredSSP or Kerberos delegation). Nothing was copied"
    }
    if (-not (Test-Path -LiteralPath $source -PathType Leaf)) {
        throw "'$source' is not reachable from $computer; check package_source_dir (a UNC share needs CredSSP or Kerberos delegation). Nothing was copied"
    }
    $tmp = "$dest.sync-tmp"
    if (Test-Path -LiteralPath $tmp) { Remove-Item -LiteralPath $tmp -Force }
    Copy-Item -LiteralPath $source -Destination $tmp
    $actual = (Get-FileHash -LiteralPath $tmp -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -ne $want) {
        Remove-Item -LiteralPath $tmp -Force -ErrorAction SilentlyContinue
        throw "the copy of $name on $computer has SHA-256 $($actual.Substring(0, 12))..., expected $($want.Substring(0, 12))...: the source or the copy is damaged. The copy was deleted; $PackageDir is as it was"
    }
    Move-Item -LiteralPath $tmp -Destination $dest -Force
    $copied = $true
}
$r = [ordered]@{
    ok = $true; op = 'sync-package'; version = $Version; path = $dest; copied = $copied
    replaced = ($copied -and $null -ne $before); sha256 = $want
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
