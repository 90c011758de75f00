"""The http source: API Gateway (REST, HTTP API) and function-URL events from local HTTP requests."""
