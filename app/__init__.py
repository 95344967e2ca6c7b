"""The FastAPI service: loads a SavedModel at start-up and serves predictions and
feature maps with server-side dynamic batching."""
