"""pyinfra loads this before the inventory and before connecting: validate every host's data first."""

from pyinfra import state

from comfyinfra.preflight import install

install(state)
