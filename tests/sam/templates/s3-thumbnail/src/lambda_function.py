"""The tutorial's handler shape: one thumbnail per uploaded object (here: its planned key and size, printed)."""

import json
import os
from urllib.parse import unquote_plus


def lambda_handler(event, context):
    results = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        thumbnail = {"source": f"{bucket}/{key}", "size": record["s3"]["object"].get("size"),
                     "destination": f"{os.environ['DESTINATION_BUCKET']}/resized-{key}",
                     "width": int(os.environ["THUMBNAIL_WIDTH"])}
        print("THUMBNAIL " + json.dumps({"thumbnail": thumbnail, "event": event}))
        results.append(thumbnail)
    return results
