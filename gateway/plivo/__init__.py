"""Plivo's REST API: the client and the data it returns. Knows nothing of GraphQL."""
