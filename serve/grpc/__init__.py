"""gRPC adapter: the ``ganserve.v1.Gateway`` service over :class:`ganserve.serve.service.GatewayService`."""
