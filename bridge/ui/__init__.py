"""The status page on api.listen: live figures, recent failures, dead letters (static assets, no CDN)."""
