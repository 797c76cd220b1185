# Starts the watchdog's task now (it also starts at boot). With restart, a running watchdog is stopped first, so the
# new script or definition takes over; ComfyUI itself keeps running (the watchdog's start is a no-op for it).
# $Params (set before this body): task_path, task_name, restart.
$task = Get-ScheduledTask -TaskPath $Params.task_path -TaskName $Params.task_name
if ($Params.restart -and [string]$task.State -eq 'Running') {
    Stop-ScheduledTask -TaskPath $Params.task_path -TaskName $Params.task_name
}
Start-ScheduledTask -TaskPath $Params.task_path -TaskName $Params.task_name
Write-Output "CHANGED: task $($Params.task_path)$($Params.task_name) started"
