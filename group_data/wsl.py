"""Ubuntu under WSL2 on a Windows box. The driver is the Windows one (its version numbering is
used for the torch choice); nvidia-smi lives in /usr/lib/wsl/lib. systemd only when enabled in
/etc/wsl.conf, else supervisord."""

host_kind = "wsl"
# Declared for planning without the host (./infra render); the host's facts win, a contradiction fails the host.
# Whether systemd runs is a per-machine choice (/etc/wsl.conf): declare platform_init per host in the inventory.
platform_arch = "x86_64"
