"""Data pipeline: fetch -> clips -> interpolate -> shards -> load (DESIGN.md section 1)."""
