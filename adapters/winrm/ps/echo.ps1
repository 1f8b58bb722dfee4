# mcms-op: echo
# Returns its argument unchanged, so a test can prove that values travel byte-exact.
param(
    [string]$Text
)
$r = [ordered]@{ ok = $true; op = 'echo'; text = $Text; length = $Text.Length }
[Console]::Out.WriteLine((ConvertTo-Json -InputObject $r -Compress))
