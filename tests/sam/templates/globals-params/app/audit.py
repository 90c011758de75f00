"""The success destination: receives Lambda's invocation record."""

import json


def handler(event, context):
    print("AUDIT " + json.dumps(event))
