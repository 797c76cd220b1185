"""comfyinfra: deploy pinned ComfyUI servers with pyinfra. Spec -> plan -> roles -> operations."""
