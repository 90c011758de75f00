"""MQTT source: AWS IoT topic rules on a local broker."""
