"""A scheduled report: the Scheduler Input (with its context attributes filled in) or an EventBridge event."""

import json
import os


def handler(event, context):
    print("REPORT " + json.dumps({"report": os.environ["REPORT"], "event": event}))
    return {"report": os.environ["REPORT"]}
