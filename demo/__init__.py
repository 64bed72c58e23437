"""``make demo`` (``python -m demo``): the whole system on one machine — an embedded MQTT broker,
the collector with its web app on SQLite, a simulated fleet of registers with one agent each, a
demo company with users of different rights — until Ctrl-C."""
