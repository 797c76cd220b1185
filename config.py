"""pyinfra loads this before the inventory and before connecting: validate every host's data first."""

from pyinfra import state

from comfyinfra.operations import pyinfra_overhead
from comfyinfra.preflight import install

install(state)
pyinfra_overhead.install()  # pyinfra's per-operation helpers, same answers at a fraction of the CPU
