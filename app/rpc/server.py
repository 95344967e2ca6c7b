"""The gRPC server: grpc.aio in the app's event loop, started by the lifespan once the
models are loaded and warm, and stopped first on shutdown (its calls finish within the
grace period, then the queues drain). Message size limits are the HTTP ones: a request
as large as CIFAR10_MAX_UPLOAD_BYTES, the body limit. grpc.health.v1 answers SERVING
while it runs (Kubernetes' gRPC probes), NOT_SERVING once it is draining."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from app.metrics import Protocol
from app.rpc import tfserving
from app.rpc.calls import Edge
from app.serving.service import Service
from app.settings import Settings

log = logging.getLogger("cifar10.rpc")
SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


class GrpcServer:
    """The running server and its health servicer."""

    def __init__(self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, port: int) -> None:
        self.server, self.health, self.port = server, health_servicer, port

    @classmethod
    async def start(cls, service: Service, settings: Settings) -> GrpcServer:
        """Bind CIFAR10_GRPC_HOST:CIFAR10_GRPC_PORT (0: a free port) and serve."""
        assert settings.grpc_port is not None, "the lifespan starts it only with a port"
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_upload_bytes),
                ("grpc.max_send_message_length", -1),  # answers may exceed requests (feature maps)
                ("grpc.so_reuseport", 0),  # a port in use is an error, not a second listener
            ],
            maximum_concurrent_rpcs=None,  # admission control is the service's (app.serving.admission)
        )
        tfserving.add_to(server, Edge(service, settings, Protocol.TFSERVING_GRPC))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        port = server.add_insecure_port(address)  # raises RuntimeError if it cannot bind
        await server.start()
        for name in ("", *SERVICES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC (TF Serving's PredictionService and ModelService) on %s:%d", settings.grpc_host, port)
        return cls(server, health_servicer, port)

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING at once; calls in progress get `grace_s` to finish, then are cancelled."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
