"""Sinks: where serialised batches go.

- `elasticsearch`: `_bulk` with `create` and deterministic ids; per-item outcomes.
- `logstash`: the same bulk lines to Logstash's `http` input (logstash/pipeline/).
- `spool`: fsynced segments on disk while the main sink is away, replayed in order.
- `webhook`: alerts only, to a Slack-style webhook, from a queue of its own.

`base.py` says what a sink is; `http.py` holds what the HTTP sinks share.
"""
