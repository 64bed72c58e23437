"""The agent runtime: ``AgentRuntime`` (in ``assembly``) runs the device workers (``device``), the
backlog replay (``replay``), ``cmd`` handling (``commands``) and gap reports (``gap_reports``)."""

from agent.runtime.assembly import AgentRuntime, utc_now
from agent.runtime.device import DeviceOpener, DevicePoller, open_driver, topic_safe_id

__all__ = ["AgentRuntime", "DeviceOpener", "DevicePoller", "open_driver", "topic_safe_id", "utc_now"]
