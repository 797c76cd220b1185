# comfyinfra's directories on a Windows host, each with an ACL of its own (inheritance off): the watchdog runs
# elevated, so what it runs and reads must be writable by administrators only; ProgramData's inherited ACL would let
# every local user create files here. The task's user may read everything and write its logs. All of the
# directories are done whenever one is wrong (parents first), so one run leaves every one right.
# $Params (set before this body): dirs, logs, user.
foreach ($dir in $Params.dirs) {
    New-Item -ItemType Directory -Force -Path $dir | Out-Null
    $grant = if ($dir -eq $Params.logs) { '(OI)(CI)M' } else { '(OI)(CI)RX' }
    # SIDs, not names: S-1-5-32-544 Administrators, S-1-5-18 SYSTEM (names are localized)
    # Owned by Administrators, the directory and everything in it: an owner can always rewrite an ACL, so a
    # directory someone else created first (ProgramData lets every user) would stay theirs otherwise.
    & icacls.exe $dir /setowner '*S-1-5-32-544' /T /C /Q
    if ($LASTEXITCODE -ne 0) { throw "icacls /setowner failed on $dir (exit $LASTEXITCODE)" }
    & icacls.exe $dir /inheritance:r /grant:r '*S-1-5-32-544:(OI)(CI)F' '*S-1-5-18:(OI)(CI)F' "$($Params.user):$grant" /Q
    if ($LASTEXITCODE -ne 0) { throw "icacls failed on $dir (exit $LASTEXITCODE)" }
    # What is inside takes the directory's ACL: a file planted with a grant of its own loses it.
    if (Get-ChildItem -LiteralPath $dir -File -Force) {
        & icacls.exe (Join-Path $dir '*') /reset /C /Q
        if ($LASTEXITCODE -ne 0) { throw "icacls /reset failed in $dir (exit $LASTEXITCODE)" }
    }
    # Grants outside the three above (a previous owner's, the creator's) are removed.
    $acl = Get-Acl -LiteralPath $dir
    $keep = @('S-1-5-32-544', 'S-1-5-18',
              (New-Object Security.Principal.NTAccount($Params.user)).Translate([Security.Principal.SecurityIdentifier]).Value)
    foreach ($rule in $acl.GetAccessRules($true, $false, [Security.Principal.SecurityIdentifier])) {
        if ($keep -notcontains $rule.IdentityReference.Value) { [void]$acl.RemoveAccessRuleSpecific($rule) }
    }
    Set-Acl -LiteralPath $dir -AclObject $acl
    Write-Output "CHANGED: $dir"
}
