"""The partial-batch-response handler from AWS's documentation: report the failed messages' ids only."""

import json


def lambda_handler(event, context):
    if event:
        batch_item_failures = []
        sqs_batch_response = {}
        for record in event["Records"]:
            try:
                process_message(record)
            except Exception:
                batch_item_failures.append({"itemIdentifier": record["messageId"]})
        sqs_batch_response["batchItemFailures"] = batch_item_failures
        return sqs_batch_response


def process_message(record):
    body = json.loads(record["body"])
    print("ORDER " + json.dumps({"body": body, "receive_count": record["attributes"]["ApproximateReceiveCount"],
                                 "event_source_arn": record["eventSourceARN"], "record": record}))
    if body.get("poison"):
        raise ValueError(f"cannot process order {body.get('order')}")
