"""Central collector: MQTT ingest, storage, alert rules, notifications and the web/API."""
