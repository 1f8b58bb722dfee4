# mcms-op: run-script
# Runs one of the operators' own scripts (notify-deploy.ps1, Deploy-CamService.ps1...) with
# its parameters and a deadline, and returns its exit code and the tail of its output.
# The parameters arrive as a JSON object and are splatted: no value is ever part of a
# command text. The script runs in a child PowerShell process (a job), so a script that
# hangs is stopped at TimeoutSec and one that calls `exit` ends only itself.
param(
    [Parameter(Mandatory = $true)][string]$ScriptPath,
    [object]$ScriptParameters = $null,
    [Parameter(Mandatory = $true)][ValidateRange(1, 3600)][int]$TimeoutSec,
    [int]$MaxOutputBytes = 16384
)
$computer = $env:COMPUTERNAME
if (-not (Test-Path -LiteralPath $ScriptPath -PathType Leaf)) {
    throw "script '$ScriptPath' does not exist on $computer; check its path under scripts in the bot configuration. Nothing was run"
}
$splat = @{}
if ($null -ne $ScriptParameters) {
    foreach ($p in $ScriptParameters.PSObject.Properties) {
        # A switch arrives as a bool: splatting $true/$false binds a [switch] parameter, and a
        # plain bool survives the job's serialization where a SwitchParameter would not.
        $splat[$p.Name] = $p.Value
    }
}
$began = [Diagnostics.Stopwatch]::StartNew()
$job = Start-Job -ArgumentList $ScriptPath, $splat -ScriptBlock {
    param([string]$Path, [hashtable]$Splat)
    $global:LASTEXITCODE = 0
    $failed = $null
    try {
        $text = & $Path @Splat *>&1 | Out-String -Width 200
    } catch {
        $text = ''
        $failed = $_.Exception.Message
    }
    [pscustomobject]@{ text = $text; exit_code = $LASTEXITCODE; error = $failed }
}
$ended = 'exited'
if (-not (Wait-Job -Job $job -Timeout $TimeoutSec)) {
    Stop-Job -Job $job
    $ended = 'timeout'
}
$out = Receive-Job -Job $job -ErrorAction SilentlyContinue | Select-Object -Last 1
Remove-Job -Job $job -Force
$text = ''
$code = $null
if ($null -ne $out) {
    $text = [string]$out.text
    $code = [int]$out.exit_code
    if ($out.error) {
        $text += "`n" + [string]$out.error
        if ($code -eq 0) { $code = 1 }
    }
}
if ($text.Length -gt $MaxOutputBytes) { $text = $text.Substring($text.Length - $MaxOutputBytes) }
$r = [ordered]@{
    ok = $true; op = 'run-script'; script = $ScriptPath; ended = $ended; exit_code = $code
    duration_ms = [long]$began.ElapsedMilliseconds; output = $text
}
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
