"""lambda-bridge: local origins (directories, queues, schedules, MQTT) to AWS Lambda semantics."""

__version__ = "0.1.0"
