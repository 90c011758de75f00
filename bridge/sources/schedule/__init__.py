"""Schedule source: EventBridge rules and Scheduler schedules on this machine's clock."""
