"""Cluster mode: several daemons share AWS SQS (the async queue) and DynamoDB (ledger, leases, dead letters)."""
