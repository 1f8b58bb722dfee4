# mcms-op: read-share
# Which of Versions this host's package folder holds, each with its SHA-256 computed here
# (read-only). A folder the host cannot reach is reported, not thrown.
param(
    [Parameter(Mandatory = $true)][string]$PackageDir,
    [string[]]$Versions = @()
)
$reachable = Test-Path -LiteralPath $PackageDir -PathType Container
$entries = @()
foreach ($v in $Versions) {
    $e = [ordered]@{ version = $v; present = $false; sha256 = $null }
    $zip = [IO.Path]::Combine($PackageDir, "MCMS_Setup_$v.zip")
    if ($reachable -and (Test-Path -LiteralPath $zip -PathType Leaf)) {
        $e.present = $true
        $e.sha256 = (Get-FileHash -LiteralPath $zip -Algorithm SHA256).Hash.ToLowerInvariant()
    }
    $entries += $e
}
$r = [ordered]@{ ok = $true; op = 'read-share'; reachable = $reachable; packages = $entries }
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress -Depth 3))
