"""Edge agent: reads registers through drivers and publishes their state over MQTT."""

from agent.lean import skip_pydantic_plugin_discovery

skip_pydantic_plugin_discovery()  # before any agent module defines a pydantic model
