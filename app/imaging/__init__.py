"""Images in and out: the image policy that turns uploads into the model's uint8
32x32 input (decode), and the PNGs the service draws (channel grids, overlays)."""
