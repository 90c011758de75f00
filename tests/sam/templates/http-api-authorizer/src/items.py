"""An HTTP API (payload 2.0) handler: the item named by the path parameter."""

import json


def handler(event, context):
    item_id = event["pathParameters"]["id"]
    method = event["requestContext"]["http"]["method"]
    print("ITEM " + json.dumps({"id": item_id, "method": method}))
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"id": item_id, "method": method})}
