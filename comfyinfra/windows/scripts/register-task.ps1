# Registers (or replaces) the watchdog's scheduled task from its uploaded XML, as the distro's owner with a stored
# password (LogonType Password: the task runs whether or not that user is logged on), then records what was
# registered: the XML's hash and a salted PBKDF2 of the password, so that the next deploy re-registers exactly when
# either changed. $Params (set before this body): xml, task_path, task_name, user, stamp; $Password.
$xml = Get-Content -LiteralPath $Params.xml -Raw -Encoding UTF8
Register-ScheduledTask -TaskPath $Params.task_path -TaskName $Params.task_name -Xml $xml -User $Params.user `
    -Password $Password -Force | Out-Null
$registered = Get-ScheduledTask -TaskPath $Params.task_path -TaskName $Params.task_name
if ([string]$registered.Principal.LogonType -ne 'Password') {
    throw "the task registered with LogonType $($registered.Principal.LogonType), not Password"
}
Set-Content -LiteralPath $Params.stamp -Value $Params.stamp_text -Encoding ASCII -NoNewline
Write-Output "CHANGED: task $($Params.task_path)$($Params.task_name) registered as $($Params.user)"
