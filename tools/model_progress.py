"""Print the fleet's model downloads: `pyinfra inventory/prod.py tools/model_progress.py --dry` (changes nothing).

For each host, the last line of every per-model progress log (bytes, rate, ETA, or "in place").
"""

from pyinfra import host, logger

from comfyinfra.operations.models import ModelProgress
from comfyinfra.plan import make_paths
from comfyinfra.preflight import spec_for

spec = spec_for(host)
paths = make_paths(spec.install_root, spec.models_dir)
lines = host.get_fact(ModelProgress, logs=paths.model_logs)
for line in lines or [f"no model downloads logged in {paths.model_logs}"]:
    logger.info(f"{host.print_prefix}{line}")
