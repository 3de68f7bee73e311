"""gRPC adapter: the ``ganserve.v1.Gateway`` service over :class:`serve.service.GatewayService`."""
