# mcms-op: switch-release
# Points every component of a release at new binaries, then reads each back: each site's
# physicalPath (SiteNames[i] -> SitePaths[i]) and each service's ImagePath
# (ServiceNames[i] -> ServiceImagePaths[i], registry HKLM:\SYSTEM\CurrentControlSet\Services).
# With ReleasesRoot (a switch to a release) every path must lie inside it and exist; without
# it (a restore of what the host had before) the site folders must still exist. Writes to
# applicationHost.config fail transiently while another writer holds the file: retried a
# few times within TimeoutSec. A failure says which components were already switched.
param(
    [string[]]$SiteNames = @(),
    [string[]]$SitePaths = @(),
    [string[]]$ServiceNames = @(),
    [string[]]$ServiceImagePaths = @(),
    [string]$ReleasesRoot = '',
    [ValidateRange(1, 3600)][int]$TimeoutSec = 30
)
Import-Module WebAdministration
$computer = $env:COMPUTERNAME
$maxAttempts = 4
if ($SiteNames.Count -ne $SitePaths.Count -or $ServiceNames.Count -ne $ServiceImagePaths.Count) {
    throw "switch-release on ${computer}: names and paths differ in number (a bug in the bot); nothing was changed"
}
$root = ''
if ($ReleasesRoot) { $root = [IO.Path]::GetFullPath($ReleasesRoot).TrimEnd('\') }

function Assert-Inside([string]$Path, [string]$What) {
    if (-not $root) { return }
    $full = [IO.Path]::GetFullPath($Path)
    if (-not $full.StartsWith($root + '\', [StringComparison]::OrdinalIgnoreCase)) {
        throw "refused $What '$full' on ${computer}: it is not under the releases root '$root'; nothing was changed"
    }
}

function Get-Executable([string]$ImagePath) {
    # "C:\x\y.exe" --args -> C:\x\y.exe ; unquoted: up to the first space.
    $t = $ImagePath.Trim()
    if ($t.StartsWith('"')) { return $t.Substring(1, $t.IndexOf('"', 1) - 1) }
    return ($t -split ' ', 2)[0]
}

# Check everything before the first write: a missing folder must not leave half a switch.
for ($i = 0; $i -lt $SiteNames.Count; $i++) {
    $name = $SiteNames[$i]
    if (-not (Test-Path -LiteralPath "IIS:\Sites\$name")) { throw "IIS site '$name' does not exist on $computer; nothing was changed" }
    Assert-Inside $SitePaths[$i] 'site folder'
    $folder = [Environment]::ExpandEnvironmentVariables($SitePaths[$i])
    if (-not (Test-Path -LiteralPath $folder -PathType Container)) {
        throw "folder '$($SitePaths[$i])' for site '$name' does not exist on $computer; deploy the release first. Nothing was changed"
    }
}
for ($i = 0; $i -lt $ServiceNames.Count; $i++) {
    $name = $ServiceNames[$i]
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$name"
    if (-not (Test-Path -LiteralPath $key)) { throw "service '$name' does not exist on $computer; nothing was changed" }
    if ($root) {
        $exe = Get-Executable $ServiceImagePaths[$i]
        Assert-Inside $exe 'executable'
        if (-not (Test-Path -LiteralPath $exe -PathType Leaf)) {
            throw "executable '$exe' for service '$name' does not exist on $computer; deploy the release first. Nothing was changed"
        }
    }
}

$done = @()
function Set-WithRetry([scriptblock]$Write, [string]$What) {
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $attempts = 0
    while ($true) {
        $attempts++
        try { & $Write; return } catch {
            $message = $_.Exception.Message
            $transient = $message -match 'Cannot write configuration file|being used by another process'
            $pause = 250 * $attempts
            $late = $clock.Elapsed.TotalMilliseconds + $pause -gt $TimeoutSec * 1000
            if (-not $transient -or $attempts -ge $maxAttempts -or $late) {
                $already = if ($done.Count) { 'already switched: ' + ($done -join ', ') } else { 'nothing else was switched' }
                throw "could not switch $What on $computer after $attempts attempt(s): $message ($already)"
            }
            Start-Sleep -Milliseconds $pause
        }
    }
}

$siteResults = @()
for ($i = 0; $i -lt $SiteNames.Count; $i++) {
    $name = $SiteNames[$i]; $want = $SitePaths[$i]
    $item = "IIS:\Sites\$name"
    $before = [string](Get-Item -LiteralPath $item).physicalPath
    $changed = $before.TrimEnd('\') -ne $want.TrimEnd('\')
    if ($changed) {
        Set-WithRetry { Set-ItemProperty -LiteralPath $item -Name physicalPath -Value $want } "site '$name'"
        $done += "site $name"
    }
    $now = [string](Get-Item -LiteralPath $item).physicalPath
    if ($now.TrimEnd('\') -ne $want.TrimEnd('\')) {
        throw "physicalPath of site '$name' on $computer reads '$now' after it was set to '$want'; something else rewrites the site configuration (shared configuration, DSC?)"
    }
    $siteResults += [ordered]@{ name = $name; before = $before; physical_path = $now; changed = $changed }
}
$serviceResults = @()
for ($i = 0; $i -lt $ServiceNames.Count; $i++) {
    $name = $ServiceNames[$i]; $want = $ServiceImagePaths[$i]
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$name"
    $before = [string](Get-ItemProperty -LiteralPath $key -Name ImagePath).ImagePath
    $changed = $before -ne $want
    if ($changed) {
        Set-WithRetry { Set-ItemProperty -LiteralPath $key -Name ImagePath -Value $want } "the ImagePath of service '$name'"
        $done += "service $name"
    }
    $now = [string](Get-ItemProperty -LiteralPath $key -Name ImagePath).ImagePath
    if ($now -ne $want) {
        throw "ImagePath of service '$name' on $computer reads '$now' after it was set to '$want'"
    }
    $serviceResults += [ordered]@{ name = $name; before = $before; image_path = $now; changed = $changed }
}
$r = [ordered]@{ ok = $true; op = 'switch-release'; sites = $siteResults; services = $serviceResults }
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress -Depth 4))
