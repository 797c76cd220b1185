"""Headless Linux boxes (RTX 4090, RTX 5060 Ti): systemd when it is init."""

host_kind = "linux"
