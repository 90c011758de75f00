"""A Powertools event-handler app (HTTP API resolver); runs unchanged behind the http source."""

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

app = APIGatewayHttpResolver()


@app.get("/orders/<order_id>")
def get_order(order_id: str):
    return {"order": order_id, "user": app.current_event.get_query_string_value("user"),
            "auth": app.current_event.request_context.authorizer.get_lambda}


def handler(event, context):
    return app.resolve(event, context)
