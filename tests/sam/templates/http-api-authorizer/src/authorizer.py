"""A REQUEST authorizer with simple responses (payload 2.0): allow one token."""


def handler(event, context):
    token = (event.get("headers") or {}).get("authorization", "")
    return {"isAuthorized": token == "Bearer letmein", "context": {"user": "alice"}}
