# What the deploy compares against on a Windows host, in one round trip, changing nothing: the SHA-256 of every
# managed file, whether each of comfyinfra's directories has exactly its intended ACL, what the installed IIS
# installer reports as drift (-Check), the scheduled task and the stamp of its last registration.
# $Params (set before this body): files, dirs, logs, user, installer, installer_sha256, task_path, task_name, stamp.
function Get-Sha256([string]$Path) {
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { return $null }
    return (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant()
}

# Exactly: owned by Administrators, protected from inheritance; Administrators and SYSTEM full control; the task's
# user read (logs: modify).
function Test-OwnAcl([string]$Path, [string]$UserSid, [string]$UserRights) {
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) { return $false }
    $acl = Get-Acl -LiteralPath $Path
    if (-not $acl.AreAccessRulesProtected) { return $false }
    if ($acl.GetOwner([Security.Principal.SecurityIdentifier]).Value -ne 'S-1-5-32-544') { return $false }
    $found = @{}
    foreach ($rule in $acl.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier])) {
        if ($rule.AccessControlType -ne 'Allow') { return $false }
        $found[$rule.IdentityReference.Value] = [string]$rule.FileSystemRights
    }
    $expected = @{ 'S-1-5-32-544' = 'FullControl'; 'S-1-5-18' = 'FullControl'; $UserSid = $UserRights }
    if ($found.Count -ne $expected.Count) { return $false }
    foreach ($sid in $expected.Keys) {
        if ($found[$sid] -ne $expected[$sid]) { return $false }
    }
    return $true
}

try {
    $userSid = (New-Object Security.Principal.NTAccount($Params.user)).Translate([Security.Principal.SecurityIdentifier]).Value
} catch {
    throw "the Windows account $($Params.user) (wsl_user) does not exist on this host: create it, log in once as it and install the WSL distro as it"
}
$files = @{}
foreach ($path in $Params.files) { $files[$path] = Get-Sha256 $path }
$acls = @{}
foreach ($dir in $Params.dirs) {
    $rights = if ($dir -eq $Params.logs) { 'Modify, Synchronize' } else { 'ReadAndExecute, Synchronize' }
    $acls[$dir] = Test-OwnAcl $dir $userSid $rights
}

# The installer's own -Check, only when the installed copy is the one this deploy would upload (else it is run anyway).
$drift = $null
if ((Get-Sha256 $Params.installer) -eq $Params.installer_sha256) {
    try {
        $drift = @(& $Params.installer -Check | ForEach-Object { [string]$_ } | Where-Object { $_ -like 'DRIFT: *' })
    } catch {
        # e.g. URL Rewrite or ARR not installed, no valid certificate: the run will stop on the same error
        $drift = @("DRIFT: the installer's check stopped: $($_.Exception.Message)")
    }
}

$task = $null
$registered = Get-ScheduledTask -TaskPath $Params.task_path -TaskName $Params.task_name -ErrorAction SilentlyContinue
if ($registered) {
    $task = @{ state = [string]$registered.State; user = [string]$registered.Principal.UserId;
               logon = [string]$registered.Principal.LogonType }
}
$stamp = $null
if (Test-Path -LiteralPath $Params.stamp -PathType Leaf) { $stamp = Get-Content -LiteralPath $Params.stamp -Raw }

@{ files = $files; acls = $acls; drift = $drift; task = $task; stamp = $stamp } | ConvertTo-Json -Compress -Depth 4
