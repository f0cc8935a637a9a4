-- sagaway schema 10 for PostgreSQL: OpenTelemetry trace context. A run keeps the W3C trace context
-- (traceparent, tracestate) of the code that started it, a signal that of its sender, and a
-- message that of its publisher, so that every process working on them joins the same trace.
-- NULL when tracing was off.
ALTER TABLE sagaway_runs ADD COLUMN trace_context TEXT;
ALTER TABLE sagaway_signals ADD COLUMN trace_context TEXT;
ALTER TABLE sagaway_messages ADD COLUMN trace_context TEXT
