"""Returns the event it got (as a JSON body) or misbehaves on request, for the http source's tests."""

import json
import time


def handler(event, context):
    mode = (event.get("queryStringParameters") or {}).get("mode")
    if mode == "raise":
        raise RuntimeError("boom")
    if mode == "malformed":
        return {"statusCode": "teapot"}
    if mode == "sleep":
        time.sleep(3)
    if mode == "bare":
        return {"just": "a dict"}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
