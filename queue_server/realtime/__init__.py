"""Live hall state: the outbox relay, channels (memory or Redis), per-hall hubs, websocket feeds."""
