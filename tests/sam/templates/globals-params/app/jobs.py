"""A job handler: SQS records or a scheduled tick; prints what it sees, including its settings."""

import json
import os

SETTINGS = ("STAGE", "LOG_LEVEL", "JOBS_QUEUE_URL", "GREETING", "SHARED_TABLE", "DEBUG_ONLY")


def handler(event, context):
    settings = {name: os.environ.get(name) for name in SETTINGS}
    print("JOB " + json.dumps({"event": event, "settings": settings}))
    return {"ok": True}
