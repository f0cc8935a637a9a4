"""The reference shop: an HTTP checkout built on sagaway, as a pattern to copy.

One saga per checkout waits durably between the screens (customer, confirm, purchase),
reserves stock and charges the card at provider services with idempotency keys, and
publishes `order.placed` through the outbox to a mailer and a stock group. The HTTP service
(`create_shop`) puts `Idempotency-Key` on every state-changing request, sheds load beyond an
adaptive in-flight limit with a fast 503, and writes ALB-format access logs that
`sagaway slo report` reads. `sagaway shop serve` runs it with its providers and workers;
docs/shop.md explains each part.
"""
