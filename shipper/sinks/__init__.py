"""Sinks: where encoded documents go.

- `elasticsearch`: `_bulk` with `create` and deterministic ids; an outcome per document.
- `logstash`: the same documents, ids in `@metadata`, to Logstash's `http` input (logstash/pipeline/).
- `spool`: fsynced segments on disk while the main sink is away, replayed in order.
- `webhook`: a notifier: alerts only, to a Slack-style webhook, from a queue of its own.

`base.py` is the contract (what a sink is handed and answers, and what a notifier is);
`shipper/delivery.py` decides what follows an answer; `http.py` is the one POST.
"""
