"""Directory source: a local folder behaves like an S3 bucket with event notifications."""
