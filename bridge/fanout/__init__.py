"""Fan-out that handlers publish to: EventBridge buses (PutEvents, rules) and SNS topics (Publish, subscriptions)."""
