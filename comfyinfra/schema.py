"""Print the host spec as JSON schema: `python -m comfyinfra.schema` (the reference for every knob)."""

import json

from comfyinfra.spec import HostSpec

if __name__ == "__main__":
    print(json.dumps(HostSpec.model_json_schema(), indent=2))
