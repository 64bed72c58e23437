"""Keep the agent's resident memory low (target ≤ 35 MB RSS on a shop's POS PC).

pydantic looks for plugins when it builds its first model, through
``importlib.metadata.entry_points``: importing that (email, zipfile, csv, tempfile, lzma, …) costs
the agent 4.6 MB, and the scan reads every installed distribution, for plugins an agent never has.
``PYDANTIC_DISABLE_PLUGINS`` stops the scan but not the import, so a stand-in loader that reports
no plugins takes the loader module's place. Should pydantic move its loader, the stand-in is just
unused: memory goes back up, nothing breaks (tests/agent/test_lean_imports.py notices).
"""

from __future__ import annotations

import sys
import types

PYDANTIC_PLUGIN_LOADER = "pydantic.plugin._loader"


def skip_pydantic_plugin_discovery() -> None:
    """Must run before pydantic builds its first model; a loader already imported is left alone."""
    if PYDANTIC_PLUGIN_LOADER in sys.modules:
        return
    loader = types.ModuleType(PYDANTIC_PLUGIN_LOADER, "the agent has no pydantic plugins (agent/lean.py)")
    loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules[PYDANTIC_PLUGIN_LOADER] = loader
