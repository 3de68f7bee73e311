"""Who is calling and what they may do: request IDs and access logs, API keys, rate limits.

One core shared by both adapters (:mod:`ganserve.serve.http.access` and the gRPC servicer): each
request gets a :class:`~ganserve.serve.access.context.RequestContext` in a context variable, which the
service, the backends and every log line of the request read.
"""
