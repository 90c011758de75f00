"""sam-import of fan-out: EventBridgeRule / CloudWatchEvent / SNS events, AWS::Events::EventBus and AWS::SNS::Topic
resources, into a config that loads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from bridge.config.model import load_config
from bridge.sam import import_template

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Orders:
    Type: AWS::Events::EventBus
    Properties:
      Name: orders
  Alerts:
    Type: AWS::SNS::Topic
    Properties:
      Subscription:
        - Protocol: sqs
          Endpoint: !GetAtt AlertLog.Arn
  AlertLog:
    Type: AWS::SQS::Queue
  Fulfil:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Runtime: python3.12
      CodeUri: src/
      Environment:
        Variables:
          TOPIC_ARN: !Ref Alerts
          BUS: !GetAtt Orders.Arn
      Events:
        Big:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref Orders
            Pattern:
              source: [shop]
              detail: {total: [{numeric: [">", 100]}]}
            InputTransformer:
              InputPathsMap: {total: $.detail.total}
              InputTemplate: '{"t": <total>}'
            RetryPolicy: {MaximumRetryAttempts: 3}
        Legacy:
          Type: CloudWatchEvent
          Properties:
            Pattern: {source: [aws.ec2]}
            InputPath: $.detail
        Paged:
          Type: SNS
          Properties:
            Topic: !Ref Alerts
            FilterPolicy: {severity: [critical]}
            FilterPolicyScope: MessageAttributes
"""


def test_rules_topics_and_subscriptions_are_imported(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    template = tmp_path / "template.yaml"
    template.write_text(textwrap.dedent(TEMPLATE))
    result = import_template(template, output=tmp_path / "config.yaml", account_id="123456789012")
    (tmp_path / "config.yaml").write_text(result.text)
    config = load_config(tmp_path / "config.yaml")
    [big] = config.buses["orders"].rules
    assert big.event_pattern == {"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}
    [target] = big.targets
    assert target.target == "function:Fulfil" and target.retry_policy.maximum_retry_attempts == 3
    assert target.input_transformer is not None and target.input_transformer.input_template == '{"t": <total>}'
    [legacy] = config.buses["default"].rules
    assert legacy.targets[0].input_path == "$.detail"
    subs = config.topics["Alerts"].subscriptions
    assert [(s.function, s.queue, s.filter_policy) for s in subs] == [
        ("Fulfil", None, {"severity": ["critical"]}), (None, "AlertLog", None)]
    env = yaml.safe_load(result.text)["functions"]["Fulfil"]["environment"]
    assert env["TOPIC_ARN"] == "arn:aws:sns:us-east-1:123456789012:Alerts"
    assert env["BUS"] == "arn:aws:events:us-east-1:123456789012:event-bus/orders"
    assert not [u for u in result.unmapped if "SNS" in u.problem or "EventBridge" in u.problem]
