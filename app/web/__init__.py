"""The HTTP edge: protocol limits, middleware, dependencies, uploads, request bodies,
response schemas, error handlers and the routes, on FastAPI and Starlette."""
