"""The agent's start-up stays lean (footprint target ≤ 35 MB RSS): what it does not need is not imported.

Checked in a fresh interpreter, importing what ``kassa-agent run`` imports: the test process
itself has long loaded everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

# What `kassa-agent run` loads: the CLI with its run command, the runtime, every driver, a config.
PROBE = """
import json, sys
import agent.cli, agent.commands.run, agent.runtime.assembly, agent.drivers.registry
import agent.drivers.shtrih, agent.drivers.atol
agent.cli.build_parser()  # imports every command module
from agent.config import validate
validate({"agent_id": "a1", "devices": [{"protocol": "shtrih", "url": "sim://shtrih"}]})
print(json.dumps({name: name in sys.modules for name in sys.argv[1:]}))
"""


def loaded(*modules: str) -> dict[str, bool]:
    result = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, check=True)
    found: dict[str, bool] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_run_imports_neither_package_metadata_nor_tenacity() -> None:
    assert loaded("importlib.metadata", "tenacity") == {"importlib.metadata": False, "tenacity": False}


def test_run_loads_no_pydantic_but_its_msgspec_mirrors() -> None:
    """pydantic (~13 MB resident): the agent's contract and config go through msgspec instead."""
    assert loaded("pydantic", "protocol.kkt.state", "protocol.mqtt.models", "protocol.mqtt.wire") == {
        "pydantic": False,
        "protocol.kkt.state": False,
        "protocol.mqtt.models": False,
        "protocol.mqtt.wire": True,
    }


def test_pydantic_models_still_validate_without_the_plugin_scan() -> None:
    """The collector's models in an agent process (tests, tools) still work with the scan stubbed."""
    probe = (
        "import agent, pydantic\n"
        "from protocol.mqtt.models import AckPayload\n"
        "print(AckPayload.model_validate_json('{\"session\": 3, \"seq\": 7}').seq)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "7"
