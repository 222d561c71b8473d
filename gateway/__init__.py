"""plivo-verify-gateway: a GraphQL gateway in front of Plivo's Verify Session API."""

__version__ = "0.1.0"
