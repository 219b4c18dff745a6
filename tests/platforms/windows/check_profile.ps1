# CI check of the native-PowerShell profile (roles/ccq_shell/templates/ccq.ps1.j2, rendered by
# scripts/render_windows_profile.py): PowerShell itself parses it, dot-sourcing it defines the functions, and
# loading it leaves no ccq variable in the session. Runs under Windows PowerShell 5.1 and
# PowerShell 7. It does not run ccq: that needs LiteLLM on Windows, which is untested.
param([Parameter(Mandatory = $true)][string]$ProfilePath)
$ErrorActionPreference = 'Stop'

$tokens = $null
$errors = $null
[System.Management.Automation.Language.Parser]::ParseFile((Resolve-Path $ProfilePath).Path, [ref]$tokens, [ref]$errors) | Out-Null
if ($errors.Count -gt 0) {
    $errors | ForEach-Object { Write-Host "$($_.Extent.StartLineNumber): $($_.Message)" }
    throw "PowerShell cannot parse $ProfilePath"
}

. (Resolve-Path $ProfilePath).Path
foreach ($name in 'cc', 'ccq', 'Set-CcqKeys', 'Test-CcqProxy', 'Start-CcqProxy', 'Protect-CcqPath') {
    if (-not (Get-Command $name -CommandType Function -ErrorAction SilentlyContinue)) {
        throw "the profile does not define $name"
    }
}
foreach ($name in 'ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL', 'CEREBRAS_API_KEY', 'LITELLM_MASTER_KEY') {
    if ([Environment]::GetEnvironmentVariable($name)) { throw "loading the profile set $name" }
}
# Nothing listens on the proxy's port on a CI runner.
if (Test-CcqProxy) { throw 'Test-CcqProxy reported a proxy that is not running' }
Write-Host "ccq.ps1 parses and loads in PowerShell $($PSVersionTable.PSVersion)"
