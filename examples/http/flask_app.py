"""A plain Flask app, made a Lambda handler by apig-wsgi; runs unchanged behind the http source."""

from apig_wsgi import make_lambda_handler
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name: str):
    return jsonify(hello=name, args=request.args.to_dict(flat=False), cookie=request.cookies.get("session"))


@app.post("/echo")
def echo():
    return request.get_data(), 200, {"Content-Type": request.content_type or "application/octet-stream"}


handler = make_lambda_handler(app, binary_support=True)
