"""The agent's start-up stays lean (footprint target ≤ 35 MB RSS): what it does not need is not imported.

Checked in a fresh interpreter, importing what ``kassa-agent run`` imports: the test process
itself has long loaded everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import agent.commands.run, agent.runtime.assembly, agent.drivers.registry
from protocol.kkt.state import RegisterState
print(json.dumps({name: name in sys.modules for name in sys.argv[1:]}))
"""


def test_run_imports_neither_package_metadata_nor_tenacity() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "importlib.metadata", "tenacity"], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"importlib.metadata": False, "tenacity": False}


def test_pydantic_models_still_validate_without_the_plugin_scan() -> None:
    probe = (
        "import agent, pydantic\n"
        "from protocol.mqtt.models import AckPayload\n"
        "print(AckPayload.model_validate_json('{\"session\": 3, \"seq\": 7}').seq)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "7"
