"""The embedded, durable, SQS-compatible queue: engine on the store, SQS JSON protocol, daemon component."""
