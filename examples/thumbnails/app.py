"""An S3-triggered handler written exactly as for AWS Lambda: reports what it would thumbnail."""

import logging
import os
from urllib.parse import unquote_plus

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def handler(event, context):
    """Log each object key from an S3 notification; echo any other event."""
    records = event.get("Records", []) if isinstance(event, dict) else []
    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in records if "s3" in r]
    for key in keys:
        logger.info("would thumbnail %s", key)
    return {"thumbnailed": keys, "request_id": context.aws_request_id, "echo": None if keys else event}
