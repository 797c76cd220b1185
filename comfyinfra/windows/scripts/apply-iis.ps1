# Runs the uploaded IIS installer (idempotent: it prints CHANGED: lines for what it changed), then checks the whole
# path a browser takes: HTTPS to the site name on this box (SNI binding, certificate), IIS, ARR, ComfyUI in WSL.
# curl.exe (shipped with Windows 10 1803+) pins the name to 127.0.0.1 and keeps SNI and certificate validation.
# $Params (set before this body): installer, host_name, timeout_s.
& $Params.installer
$url = "https://$($Params.host_name)/system_stats"
$deadline = (Get-Date).AddSeconds($Params.timeout_s)
do {
    $code = & curl.exe --silent --output NUL --write-out '%{http_code}' --resolve "$($Params.host_name):443:127.0.0.1" $url
    if ($code -eq '200' -or $code -eq '401') { Write-Output "OK: $url answers $code"; return }
    Start-Sleep -Seconds 5
} while ((Get-Date) -lt $deadline)
throw "$url answered $code through IIS for $($Params.timeout_s) s (502: ComfyUI in WSL is not up; 500.19: web.config)"
