<#
  Managed by comfyinfra: keeps ComfyUI running in WSL for the scheduled task that starts this at boot.

  Long-lived. It keeps the distro alive with a wsl.exe child, starts ComfyUI as root inside the distro
  (the systemd unit, or supervisord when the distro has no systemd), polls its health URL, restarts it up
  to the configured number of times in a row, then terminates the distro and starts over. It logs to one
  file a day in the log directory and deletes those older than two weeks.

  It runs elevated, as the user that owns the distro. It never runs or reads anything the ComfyUI service
  user could write: no \\wsl$ paths, no scripts from the distro; only root's own commands (systemctl or
  supervisorctl, whose unit and configuration are root's) and the HTTP status code of the health URL.
#>
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

# Values from the inventory, written in by comfyinfra; nothing here can be changed from the command line.
$Distro = 'Ubuntu'
# The Store WSL's own wsl.exe: the System32 stub fails in session 0, where this task runs
# ("The file cannot be accessed by the system", microsoft/WSL#9231).
$Wsl = 'C:\Program Files\WSL\wsl.exe'
$HealthUrl = 'http://127.0.0.1:8188/system_stats'
$Backend = 'systemd'
$StartCommand = @('/usr/bin/systemctl', 'start', 'comfyui.service')
$RestartCommand = @('/usr/bin/systemctl', 'restart', 'comfyui.service')
$Tries = 5
$IntervalSeconds = 30
$StartupGraceSeconds = 180
$LogDir = 'C:\ProgramData\comfyinfra\logs'
$LogRetentionDays = 14

# wsl.exe writes its own messages in UTF-16 unless this is set; the log would fill with NUL characters.
$env:WSL_UTF8 = '1'
# Invoke-WebRequest draws a progress bar by default, which slows it down badly in Windows PowerShell 5.1.
$ProgressPreference = 'SilentlyContinue'

function Write-Log {
    param([string]$Message)
    # One file a day: the path is computed per line, since this process runs for weeks.
    $path = Join-Path $LogDir ('watchdog-{0:yyyyMMdd}.log' -f (Get-Date))
    Add-Content -LiteralPath $path -Value ('{0:s} {1}' -f (Get-Date), $Message) -Encoding UTF8
}

function Remove-OldLogs {
    $cutoff = (Get-Date).AddDays(-$LogRetentionDays)
    Get-ChildItem -LiteralPath $LogDir -Filter 'watchdog-*.log' -File |
        Where-Object { $_.LastWriteTime -lt $cutoff } |
        Remove-Item -Force
}

function Invoke-Wsl {
    param([string[]]$Arguments)
    # Windows PowerShell 5.1 with ErrorActionPreference Stop turns the first stderr line of a native program
    # redirected with 2>&1 into a terminating error: lowered here, for this call only.
    $ErrorActionPreference = 'Continue'
    $output = & $Wsl @Arguments 2>&1 | ForEach-Object { "$_" }
    $code = $LASTEXITCODE
    Write-Log ('wsl {0}: exit {1} {2}' -f ($Arguments -join ' '), $code, ($output -join ' | '))
    return $code
}

function Start-KeepAlive {
    # A running wsl.exe client keeps the distro (and the VM) up: systemd services alone do not, and the
    # idle timeouts in .wslconfig are the other half of this. An absolute path as root: nothing from PATH.
    Start-Process -FilePath $Wsl -ArgumentList @('-d', $Distro, '-u', 'root', '--exec', '/bin/sleep', 'infinity') `
        -WindowStyle Hidden -PassThru
}

function Start-ComfyUI {
    Invoke-Wsl (@('-d', $Distro, '-u', 'root', '--exec') + $StartCommand) | Out-Null
}

function Restart-ComfyUI {
    Invoke-Wsl (@('-d', $Distro, '-u', 'root', '--exec') + $RestartCommand) | Out-Null
}

function Test-ComfyUI {
    # Only the status code is used: the body is the service user's to write.
    # -UseBasicParsing: session 0 has no Internet Explorer engine for Windows PowerShell 5.1 to parse with.
    try {
        $response = Invoke-WebRequest -Uri $HealthUrl -UseBasicParsing -TimeoutSec 10
        return ($response.StatusCode -eq 200)
    } catch {
        return $false
    }
}

New-Item -ItemType Directory -Force -Path $LogDir | Out-Null
Remove-OldLogs
Write-Log ('watchdog started (pid {0}): ComfyUI in distro {1} ({2}), health {3}' -f $PID, $Distro, $Backend, $HealthUrl)
$keepAlive = $null
try {
    $keepAlive = Start-KeepAlive
    Start-ComfyUI
} catch {
    # The loop below retries: a failed health check restarts ComfyUI, a missing keep-alive starts it again.
    Write-Log ('first start failed: {0}' -f $_.Exception.Message)
}
Start-Sleep -Seconds $StartupGraceSeconds

$failures = 0
$logsPrunedOn = (Get-Date).Date
while ($true) {
    try {
        if ((Get-Date).Date -ne $logsPrunedOn) {
            Remove-OldLogs
            $logsPrunedOn = (Get-Date).Date
        }
        if ($null -eq $keepAlive -or $keepAlive.HasExited) {
            Write-Log 'keep-alive child exited; starting it again'
            $keepAlive = Start-KeepAlive
        }
        if (Test-ComfyUI) {
            if ($failures -gt 0) {
                Write-Log ('healthy again after {0} restart(s)' -f $failures)
            }
            $failures = 0
            Start-Sleep -Seconds $IntervalSeconds
            continue
        }
        $failures++
        if ($failures -le $Tries) {
            Write-Log ('health check failed; restart {0} of {1}' -f $failures, $Tries)
            Restart-ComfyUI
        } else {
            Write-Log ('still failing after {0} restarts; terminating distro {1} and starting again' -f $Tries, $Distro)
            Invoke-Wsl @('--terminate', $Distro) | Out-Null
            $keepAlive = Start-KeepAlive
            Start-ComfyUI
            $failures = 0
        }
        Start-Sleep -Seconds $StartupGraceSeconds
    } catch {
        # A failure of the watchdog itself (the log disk, a WSL service restart) must not end it: the next
        # boot-trigger repetition would restart it, but only after minutes without a watchdog.
        $message = $_.Exception.Message
        try { Write-Log ('watchdog error: {0}' -f $message) } catch { Write-Warning $message }
        Start-Sleep -Seconds $IntervalSeconds
    }
}
