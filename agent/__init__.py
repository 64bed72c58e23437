"""Edge agent: reads registers through drivers and publishes their state over MQTT."""
