"""The running daemon: lifecycle, live reload, the Invoke and operations APIs, sd_notify."""
