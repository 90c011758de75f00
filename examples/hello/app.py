"""A handler written exactly as for AWS Lambda: echoes the event and some context fields."""

import os


def handler(event, context):
    print(f"hello from {context.function_name}")
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "region": os.environ["AWS_REGION"],
    }
