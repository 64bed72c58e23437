"""Ingest: the source of the agents' messages (``source.py`` picks the paho consumer for an MQTT
broker or the JetStream source for a NATS cluster; both ack only after commit), the batching
writer (validation, dead letters, dedup, acks, rebirth on gaps) and the alert engine wiring."""
