"""Every way a request arrives: bytes in, operations to the pipeline, bytes out; no policy."""

from gateway.web.callbacks import CALLBACK_PATH, callback_endpoint
from gateway.web.connections import ClientConnections
from gateway.web.front import FrontDoor
from gateway.web.graphql_http import GraphQLHTTP
from gateway.web.probes import probe_routes
from gateway.web.websocket import MessageLimit, Subscriptions

__all__ = [
    "CALLBACK_PATH",
    "ClientConnections",
    "FrontDoor",
    "GraphQLHTTP",
    "MessageLimit",
    "Subscriptions",
    "callback_endpoint",
    "probe_routes",
]
