"""Durable messaging: persist, then publish.

A step publishes with `current_step().publish(topic, payload, key=...)`: the message is
committed in the same transaction as the step's completion, so it exists if and only if the
completion is recorded. Outside sagas, `app.publish(...)` (with `conn=`, inside the caller's
own transaction). Every consumer group of a topic receives every message
(`@app.consumer(topic, group=...)`), at least once, one consumer at a time per message,
FIFO per key with `ordered=True`; a message a group has handled is never handed to it again
(the inbox). Retries spent, a message goes to the group's dead letters. See
docs/messaging.md.
"""

from sagaway.messaging._message import DeadLetter, Message

__all__ = ["DeadLetter", "Message"]
