"""A Lambda authorizer: "allow" tokens pass with a context, anything else is denied; counts its calls."""

import os

CALLS = {"n": 0}


def handler(event, context):
    CALLS["n"] += 1
    token = event.get("authorizationToken") or (event.get("headers") or {}).get("authorization") or ""
    allowed = token.startswith("allow")
    if event.get("version") == "2.0":
        return {"isAuthorized": allowed, "context": {"user": token, "calls": CALLS["n"], "pid": os.getpid()}}
    arn = event["methodArn"]
    return {"principalId": token, "context": {"user": token, "calls": CALLS["n"]},
            "policyDocument": {"Version": "2012-10-17", "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow" if allowed else "Deny", "Resource": [arn]}]}}
