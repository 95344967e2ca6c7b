"""The gRPC edge: TensorFlow Serving's gRPC API (PredictionService, ModelService) and
gRPC health, served by grpc.aio in the app's own event loop on CIFAR10_GRPC_PORT, so it
shares the registry, batchers, admission and decode pool with the HTTP edge (app.web).
Named `rpc`, not `grpc`, so that `import grpc` means the library."""
