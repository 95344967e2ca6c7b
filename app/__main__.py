"""`python -m app` / `cifar10-serve`: run one uvicorn worker on the factory.

One worker per process on purpose: one model and one batch queue per process;
scale out with replicas.
"""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(prog="cifar10-serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds to finish accepted requests on SIGTERM")
    args = parser.parse_args()
    uvicorn.run(
        "app.main:create_app", factory=True, host=args.host, port=args.port, workers=1,
        access_log=False, timeout_graceful_shutdown=args.graceful_timeout,
    )


if __name__ == "__main__":
    main()
