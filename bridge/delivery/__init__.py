"""Delivery: the durable async queue, retry policy, destinations and dead letters."""
