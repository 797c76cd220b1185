"""comfyinfra's own pyinfra operations and the facts they read, one module per domain:
git (pinned checkouts, source reachability), pip (exact pins, stamped installs, index reachability),
models (verified sync), service (supervisord, secrets file, restarts on change, health) and
common (failing one host, deciding on what other operations changed).

Every fact has a `default()` for the absent case (no venv, no checkout, no service user yet, no
supervisord), so `--dry` works on a fresh host and predicts what the real run does.
"""
