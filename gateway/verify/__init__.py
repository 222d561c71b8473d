"""The domain: read a session (cache, single-flight, budget), list, start, validate, watch."""
