"""SNS's query protocol (form-encoded ``Action=Publish`` on ``POST /``, XML answers) over the embedded topics."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from multidict import MultiDictProxy

from bridge.events import sns
from bridge.fanout.topics import Topic, TopicNotFound, Topics, attributes
from bridge.log import get_logger
from bridge.model import new_request_id

NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"
FORM = "application/x-www-form-urlencoded"
MAX_BODY = 2 * 1_048_576  # a PublishBatch of ten 256 KB messages, form-encoded
BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# Actions SNS has that the bridge answers with an error naming the config (its topics come from the file).
CONFIG_ONLY = frozenset({
    "DeleteTopic", "Subscribe", "Unsubscribe", "ConfirmSubscription", "SetTopicAttributes",
    "SetSubscriptionAttributes", "GetSubscriptionAttributes", "ListSubscriptions", "TagResource",
    "UntagResource", "ListTagsForResource", "AddPermission", "RemovePermission", "GetDataProtectionPolicy",
    "PutDataProtectionPolicy",
})
Handler = Callable[["SnsApi", Mapping[str, Any], web.Request], Awaitable[str]]


class SnsError(Exception):
    """An error SNS answers: its code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class SnsApi:
    """Publish, PublishBatch and the read-only calls SDKs make, on ``POST /``."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.log = get_logger()

    @staticmethod
    def claims(request: web.Request) -> bool:
        """Whether the request may be SNS's: a form POST to ``/`` with no ``X-Amz-Target`` (the action is
        checked once the form is read)."""
        return (request.method == "POST" and request.path == "/" and "X-Amz-Target" not in request.headers
                and request.content_type == FORM)

    async def handle(self, request: web.Request, form: Mapping[str, Any]) -> web.Response:
        """One SNS request: the XML answer, or SNS's XML error (4xx) and one log line."""
        rid = new_request_id()
        action = str(form.get("Action", ""))
        try:
            if action in CONFIG_ONLY:
                raise SnsError("InvalidAction", f"{action}: the bridge's topics and subscriptions come from the "
                                                "config file (topics:); edit it and reload")
            result = await ACTIONS[action](self, form, request)
        except SnsError as err:
            self.log.info("sns_api.error", action=action, code=err.code, error=err.message[:300], request_id=rid)
            return _xml(err.status, _error(err, rid))
        return _xml(200, f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{result}</{action}Result>'
                         f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{action}Response>")

    def _topic(self, arn: Any) -> Topic:
        try:
            return self.topics.get(arn)
        except TopicNotFound:
            raise SnsError("NotFound", "Topic does not exist", 404) from None

    async def publish(self, form: Mapping[str, Any], request: web.Request) -> str:
        """Publish: answered once every subscription's delivery is durable."""
        if form.get("PhoneNumber"):
            raise SnsError("InvalidParameter", "Invalid parameter: PhoneNumber (the bridge has no SMS)")
        topic = self._topic(form.get("TopicArn") or form.get("TargetArn"))
        message = _message(topic, _params(form, ""))
        await self.topics.publish(topic, [message])
        return f"<MessageId>{message.message_id}</MessageId>"

    async def publish_batch(self, form: Mapping[str, Any], request: web.Request) -> str:
        """PublishBatch: per-entry Successful / Failed, the good ones durable together."""
        topic = self._topic(form.get("TopicArn"))
        entries = [_params(group, "") for group in _groups(form, "PublishBatchRequestEntries.member.")]
        _check_batch(entries)
        good, failed = [], []
        for entry in entries:
            try:
                good.append((entry["Id"], _message(topic, entry)))
            except SnsError as err:
                failed.append(f"<member><Id>{escape(entry['Id'])}</Id><Code>{err.code}</Code><Message>"
                              f"{escape(err.message)}</Message><SenderFault>true</SenderFault></member>")
        await self.topics.publish(topic, [m for _, m in good])
        successful = "".join(f"<member><Id>{escape(i)}</Id><MessageId>{m.message_id}</MessageId></member>"
                             for i, m in good)
        return f"<Successful>{successful}</Successful><Failed>{''.join(failed)}</Failed>"

    async def list_topics(self, form: Mapping[str, Any], request: web.Request) -> str:
        """ListTopics (one page: the configured topics)."""
        members = "".join(f"<member><TopicArn>{escape(arn)}</TopicArn></member>" for arn in self.topics.topics())
        return f"<Topics>{members}</Topics>"

    async def create_topic(self, form: Mapping[str, Any], request: web.Request) -> str:
        """CreateTopic of a configured topic answers its ARN (idempotent, as SNS's); others name the config."""
        name = form.get("Name")
        found = [t for t in self.topics.topics().values() if t.name == name]
        if not found:
            raise SnsError("InvalidAction", f"CreateTopic {name!r}: the bridge's topics come from the config file "
                                            "(topics:); add it there and reload")
        return f"<TopicArn>{escape(found[0].arn)}</TopicArn>"

    async def get_topic_attributes(self, form: Mapping[str, Any], request: web.Request) -> str:
        """GetTopicAttributes."""
        topic = self._topic(form.get("TopicArn"))
        entries = "".join(f"<entry><key>{k}</key><value>{escape(v)}</value></entry>"
                          for k, v in attributes(topic, self.topics.config()).items())
        return f"<Attributes>{entries}</Attributes>"

    async def list_subscriptions_by_topic(self, form: Mapping[str, Any], request: web.Request) -> str:
        """ListSubscriptionsByTopic (one page)."""
        topic = self._topic(form.get("TopicArn"))
        config = self.topics.config()
        members = "".join(_subscription_member(topic, s.config.function, s.config.queue, s.arn, config)
                          for s in topic.subscribers)
        return f"<Subscriptions>{members}</Subscriptions>"


ACTIONS: dict[str, Handler] = {
    "Publish": SnsApi.publish,
    "PublishBatch": SnsApi.publish_batch,
    "ListTopics": SnsApi.list_topics,
    "CreateTopic": SnsApi.create_topic,
    "GetTopicAttributes": SnsApi.get_topic_attributes,
    "ListSubscriptionsByTopic": SnsApi.list_subscriptions_by_topic,
}
KNOWN_ACTIONS = frozenset(ACTIONS) | CONFIG_ONLY


def _subscription_member(topic: Topic, function: str | None, queue: str | None, arn: str, config: Any) -> str:
    if function is not None:
        protocol, endpoint = "lambda", config.function_arn(function)
    else:
        protocol, endpoint = "sqs", f"arn:aws:sqs:{config.region}:{config.account_id}:{queue}"
    return (f"<member><TopicArn>{escape(topic.arn)}</TopicArn><Protocol>{protocol}</Protocol><SubscriptionArn>"
            f"{escape(arn)}</SubscriptionArn><Owner>{config.account_id}</Owner><Endpoint>{escape(endpoint)}"
            "</Endpoint></member>")


def _message(topic: Topic, params: Mapping[str, Any]) -> sns.Message:
    try:
        text, subject, attrs, structure = sns.check_publish(params)
    except sns.PublishError as err:
        raise SnsError(err.code, err.message) from None
    return sns.Message(topic.arn, text, subject, attrs, structure)


def _params(form: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A message's parameters (Message, Subject, MessageStructure, MessageAttributes) under ``prefix``."""
    params: dict[str, Any] = {k: form.get(prefix + k) for k in ("Id", "Message", "Subject", "MessageStructure")}
    attrs = {}
    for entry in _groups(form, prefix + "MessageAttributes.entry."):
        name = entry.get("Name")
        if name:
            attrs[name] = {"DataType": entry.get("Value.DataType"), "StringValue": entry.get("Value.StringValue"),
                           "BinaryValue": entry.get("Value.BinaryValue")}
    params["MessageAttributes"] = attrs
    return params


def _groups(form: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.rest`` keys grouped by N, in N's order, each group keyed by ``rest``."""
    groups: dict[int, dict[str, Any]] = {}
    for key, value in form.items():
        if key.startswith(prefix):
            number, _, rest = key[len(prefix):].partition(".")
            if number.isdigit() and rest:
                groups.setdefault(int(number), {})[rest] = value
    return [groups[n] for n in sorted(groups)]


def _check_batch(entries: list[dict[str, Any]]) -> None:
    if not entries:
        raise SnsError("EmptyBatchRequest", "The batch request doesn't contain any entries.")
    if len(entries) > sns.MAX_BATCH:
        raise SnsError("TooManyEntriesInBatchRequest", f"The batch request contains more entries than "
                                                       f"permissible ({sns.MAX_BATCH}).")
    ids = [e.get("Id") for e in entries]
    for entry_id in ids:
        if not isinstance(entry_id, str) or not BATCH_ID.match(entry_id):
            raise SnsError("InvalidBatchEntryId", "A batch entry id can only contain alphanumeric characters, "
                                                  "hyphens and underscores. It can be at most 80 letters long.")
    if len(set(ids)) != len(ids):
        raise SnsError("BatchEntryIdsNotDistinct", "Two or more batch entries in the request have the same Id.")
    size = sum(len(str(e.get("Message") or "").encode()) for e in entries)
    if size > sns.MAX_MESSAGE_BYTES:
        raise SnsError("BatchRequestTooLong", f"The length of all the messages put together is more than the "
                                              f"limit ({size} > {sns.MAX_MESSAGE_BYTES} bytes).")


def _error(err: SnsError, rid: str) -> str:
    fault = "Sender" if err.status < 500 else "Receiver"
    return (f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{fault}</Type><Code>{err.code}</Code><Message>'
            f"{escape(err.message)}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>")


def _xml(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/xml")


async def read_form(request: web.Request) -> MultiDictProxy[Any] | None:
    """The form, or None when it is too large to be SNS's (then the request is not claimed)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    try:
        return await request.post()
    except (web.HTTPRequestEntityTooLarge, ValueError):
        return None
