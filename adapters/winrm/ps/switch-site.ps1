# mcms-op: switch-site
# Points an IIS site's physicalPath at the release folder <ReleasesRoot>\<Version>, then
# reads it back. Refuses a folder that does not exist (deploy-release makes it). Writes to
# applicationHost.config fail transiently while another writer holds the file: retried a
# few times within TimeoutSec, with growing pauses.
param(
    [Parameter(Mandatory = $true)][string]$Site,
    [Parameter(Mandatory = $true)][string]$ReleasesRoot,
    [Parameter(Mandatory = $true)][string]$Version,
    [ValidateRange(1, 3600)][int]$TimeoutSec = 30
)
Import-Module WebAdministration
$computer = $env:COMPUTERNAME
$item = "IIS:\Sites\$Site"
$maxAttempts = 4
if (-not (Test-Path -LiteralPath $item)) {
    throw "IIS site '$Site' does not exist on $computer"
}
$root = [IO.Path]::GetFullPath($ReleasesRoot).TrimEnd('\')
$target = [IO.Path]::GetFullPath([IO.Path]::Combine($root, $Version))
if (-not $target.StartsWith($root + '\', [StringComparison]::OrdinalIgnoreCase)) {
    throw "refused path '$target' on ${computer}: it is not under the releases root '$root'"
}
$before = [string](Get-Item -LiteralPath $item).physicalPath
if (-not (Test-Path -LiteralPath $target -PathType Container)) {
    throw "release folder '$target' does not exist on $computer, so site '$Site' still points at '$before'; deploy version $Version first"
}
$attempts = 0
if ($before.TrimEnd('\') -ne $target) {
    $clock = [Diagnostics.Stopwatch]::StartNew()
    while ($true) {
        $attempts++
        try {
            Set-ItemProperty -LiteralPath $item -Name physicalPath -Value $target
            break
        } catch {
            $message = $_.Exception.Message
            $transient = $message -match 'Cannot write configuration file|being used by another process'
            $pause = 250 * $attempts
            $late = $clock.Elapsed.TotalMilliseconds + $pause -gt $TimeoutSec * 1000
            if (-not $transient -or $attempts -ge $maxAttempts -or $late) {
                throw "could not set physicalPath of site '$Site' on $computer after $attempts attempt(s): $message The site still points at '$before'. If applicationHost.config stays locked, find what holds it (IIS Manager, a backup, antivirus) and retry"
            }
            Start-Sleep -Milliseconds $pause
        }
    }
}
$now = [string](Get-Item -LiteralPath $item).physicalPath
if ($now.TrimEnd('\') -ne $target) {
    throw "physicalPath of site '$Site' on $computer reads '$now' after it was set to '$target'; something else rewrites the site configuration (shared configuration, DSC?). Check it before starting the site"
}
$r = [ordered]@{
    ok = $true; op = 'switch-site'; site = $Site; version = $Version
    before = $before; physical_path = $now; changed = ($attempts -gt 0); attempts = $attempts
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
