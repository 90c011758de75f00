"""The logs source: log files and the systemd journal as CloudWatch Logs subscription filters."""
