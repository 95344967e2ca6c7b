"""What training and serving share: architectures, the export contract, class names
and NumPy reference layers. Nothing here imports `training` or `app`."""
