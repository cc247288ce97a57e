"""Sources: docker_logs (json-file or Engine API), docker_events."""
