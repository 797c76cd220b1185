"""Ubuntu under WSL2 on a Windows box. The driver is the Windows one (its version numbering is
used for the torch choice); nvidia-smi lives in /usr/lib/wsl/lib. systemd only when enabled in
/etc/wsl.conf, else supervisord."""

host_kind = "wsl"
