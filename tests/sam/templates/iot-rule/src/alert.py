"""An alert per hot reading: the rule's SQL result is the whole event."""

import json


def lambda_handler(event, context):
    print("ALERT " + json.dumps(event))
    return {"alerted": event.get("device_id")}
