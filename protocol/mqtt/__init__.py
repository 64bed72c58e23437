"""The agent↔collector MQTT contract: topics, envelope, payload models, JSON Schema."""
