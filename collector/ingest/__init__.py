"""MQTT ingest: the paho consumer (persistent session, manual ack after commit), the batching
writer (validation, dead letters, dedup, acks, rebirth on gaps) and the alert engine wiring."""
