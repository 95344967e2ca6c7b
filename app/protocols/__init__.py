"""The standard inference protocols' data, with no web framework and no gRPC: TF Serving's
signatures, and the Open Inference Protocol's tensors. The HTTP edge (app.web) and the
gRPC edge (app.rpc) each speak them over their own transport."""
