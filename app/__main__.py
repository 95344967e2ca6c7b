"""`python -m app` / `cifar10-serve`: run the service.

With one worker (the default), one process parses, decodes, batches and runs the
model. With `--workers N` (or CIFAR10_WORKERS) above 1, N front processes handle
HTTP and feed one model process, which holds the only batch queues (app.multiprocess).
CIFAR10_HOST and CIFAR10_PORT set the defaults of --host and --port (the container
image listens on 0.0.0.0:8000; replicas sharing the host's network each take their
own port). CIFAR10_GRPC_PORT adds TF Serving's gRPC API on that port, on --host unless
CIFAR10_GRPC_HOST is given (the image: 0.0.0.0:8500); one process only.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from app.settings import Settings
from app.web.http_limits import HttpLimits, LimitedHttpToolsProtocol


def main() -> None:
    parser = argparse.ArgumentParser(prog="cifar10-serve")
    parser.add_argument("--host", default=os.environ.get("CIFAR10_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CIFAR10_PORT", "8000")))
    parser.add_argument(
        "--workers", type=int, default=None, help="HTTP front processes (default CIFAR10_WORKERS, else 1)"
    )
    parser.add_argument(
        "--graceful-timeout", type=float, default=30.0, help="seconds to finish accepted requests on SIGTERM"
    )
    # asyncio, not uvloop: under a closed-loop flood at concurrency 512 (wrk), uvloop left
    # a new connection's /healthz unanswered for 8.7 s, the asyncio loop answered in
    # 0.2-0.6 s, at the same c=64 throughput (docs/reliability.md).
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop implementation")
    args = parser.parse_args()
    # gRPC listens where HTTP does unless CIFAR10_GRPC_HOST says otherwise: the image's
    # 0.0.0.0 must reach gRPC too, and a replica on the host's loopback keeps it there.
    # Through the environment, because the app factory reads its Settings from there.
    if not os.environ.get("CIFAR10_GRPC_HOST"):  # empty is unset, as Settings reads it
        os.environ["CIFAR10_GRPC_HOST"] = args.host
    settings = Settings()
    workers = args.workers if args.workers is not None else settings.workers
    if workers > 1:
        from app.multiprocess.supervisor import refuse_grpc, refuse_model_management, serve

        refuse_model_management(settings)
        refuse_grpc(settings)

        # Each front is a spawned process: it imports the protocol by name and reads its
        # limits from the same CIFAR10_* environment.
        serve(
            args.host,
            args.port,
            workers,
            args.graceful_timeout,
            http="app.web.http_limits:LimitedHttpToolsProtocol",
            loop=args.loop,
        )
        return
    # Header limits and head/body deadlines: uvicorn's protocol with our checks (app/web/http_limits.py).
    protocol = LimitedHttpToolsProtocol.configured(HttpLimits.from_settings(settings))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        access_log=False,
        timeout_graceful_shutdown=args.graceful_timeout,
        http=protocol,
        loop=args.loop,
    )


if __name__ == "__main__":
    main()
