"""Data pipeline: fetch -> clips -> interpolate -> shards -> load (docs/protocol.md)."""
