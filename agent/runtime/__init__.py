"""The agent runtime (assembled in ``agent.runtime.assembly``)."""

from agent.runtime.assembly import (
    AgentRuntime,
    DeviceOpener,
    DevicePoller,
    open_driver,
    topic_safe_id,
    utc_now,
)

__all__ = ["AgentRuntime", "DeviceOpener", "DevicePoller", "open_driver", "topic_safe_id", "utc_now"]
