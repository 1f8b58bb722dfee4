# mcms-op: run-dr-test
# Runs one DR test suite (playbook section 8) on this runner host and returns what it left:
# the program with its arguments, in its working directory, with extra environment
# variables, for at most TimeoutSec; then its whole process tree is killed (taskkill /T).
# Every value arrives as a parameter: nothing is spliced into this text, and the program is
# started directly (no shell parses the line). The report comes back (base64) only when
# this run wrote it; one left by an earlier run is reported stale. Output files live in
# TEMP and are removed. A cancel from the bot deletes the WinRM shell, which ends the
# shell's processes (WinRM keeps them in one job object).
param(
    [Parameter(Mandatory = $true)][string]$Program,
    [string[]]$Arguments = @(),
    [Parameter(Mandatory = $true)][string]$WorkingDir,
    [object]$Variables = $null,
    [Parameter(Mandatory = $true)][string]$ReportPath,
    [Parameter(Mandatory = $true)][int]$TimeoutSec,
    [int]$MaxReportBytes = 52428800,
    [int]$MaxLogBytes = 262144
)

function ConvertTo-ArgumentText([string]$Value) {
    # The quoting CommandLineToArgvW undoes: quote when needed, backslashes doubled before a quote.
    if ($Value -ne '' -and $Value -notmatch '[\s"]') { return $Value }
    $text = '"'
    $slashes = 0
    foreach ($ch in $Value.ToCharArray()) {
        if ($ch -eq '\') { $slashes++; continue }
        if ($ch -eq '"') { $text += ('\' * (2 * $slashes + 1)) + '"' }
        else { $text += ('\' * $slashes) + $ch }
        $slashes = 0
    }
    return $text + ('\' * (2 * $slashes)) + '"'
}

function Get-Fingerprint([string]$Path) {
    $item = Get-Item -LiteralPath $Path -ErrorAction SilentlyContinue
    if ($null -eq $item) { return $null }
    return '{0}|{1}' -f $item.Length, $item.LastWriteTimeUtc.Ticks
}

function Get-TailBase64([string]$Path, [int]$Max) {
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { return '' }
    $bytes = [IO.File]::ReadAllBytes($Path)
    if ($bytes.Length -gt $Max) { $bytes = $bytes[($bytes.Length - $Max)..($bytes.Length - 1)] }
    return [Convert]::ToBase64String([byte[]]$bytes)
}

$r = [ordered]@{
    ok = $true; op = 'run-dr-test'; ended = 'exited'; exit_code = $null; duration_ms = 0
    problem = $null; report_b64 = $null; report_problem = $null; stdout_b64 = ''; stderr_b64 = ''
}
$exe = Get-Command -Name $Program -CommandType Application -ErrorAction SilentlyContinue |
    Select-Object -First 1
if (-not (Test-Path -LiteralPath $WorkingDir -PathType Container)) {
    $r.ended = 'not-started'
    $r.problem = "the working directory $WorkingDir does not exist on $env:COMPUTERNAME"
} elseif ($null -eq $exe) {
    $r.ended = 'not-started'
    $r.problem = "command not found on ${env:COMPUTERNAME}: $Program (is it installed and on PATH?)"
}
if ($r.ended -eq 'not-started') {
    [Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
    return
}

if ($null -ne $Variables) {
    foreach ($v in $Variables.PSObject.Properties) {
        [Environment]::SetEnvironmentVariable($v.Name, [string]$v.Value, 'Process')
    }
}
$before = Get-Fingerprint $ReportPath
$tag = [Guid]::NewGuid().ToString('N')
$outFile = Join-Path $env:TEMP "mcms-dr-$tag.out"
$errFile = Join-Path $env:TEMP "mcms-dr-$tag.err"
$line = (@($Arguments) | ForEach-Object { ConvertTo-ArgumentText $_ }) -join ' '
$start = @{
    FilePath = $exe.Source; WorkingDirectory = $WorkingDir; NoNewWindow = $true; PassThru = $true
    RedirectStandardOutput = $outFile; RedirectStandardError = $errFile
}
if ($line) { $start.ArgumentList = $line }
$clock = [Diagnostics.Stopwatch]::StartNew()
$proc = Start-Process @start
$null = $proc.Handle  # without a handle taken now, ExitCode reads empty after the exit
if ($proc.WaitForExit($TimeoutSec * 1000)) {
    $r.exit_code = $proc.ExitCode
} else {
    & taskkill.exe /PID $proc.Id /T /F 2>&1 | Out-Null
    $null = $proc.WaitForExit(10000)
    $r.ended = 'timeout'
    $r.problem = "did not finish within $TimeoutSec s; its process tree was killed (taskkill /T)"
}
$r.duration_ms = [int]$clock.Elapsed.TotalMilliseconds

$now = Get-Fingerprint $ReportPath
if ($null -eq $now) {
    $r.report_problem = "no report at $ReportPath on $env:COMPUTERNAME"
} elseif ($now -eq $before) {
    $r.report_problem = "the report at $ReportPath is stale: this run did not write it"
} elseif ((Get-Item -LiteralPath $ReportPath).Length -gt $MaxReportBytes) {
    $r.report_problem = "the report at $ReportPath is over $MaxReportBytes bytes"
} else {
    $r.report_b64 = [Convert]::ToBase64String([IO.File]::ReadAllBytes($ReportPath))
}
$r.stdout_b64 = Get-TailBase64 $outFile $MaxLogBytes
$r.stderr_b64 = Get-TailBase64 $errFile $MaxLogBytes
Remove-Item -LiteralPath $outFile, $errFile -ErrorAction SilentlyContinue
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
