"""What training and serving share. Nothing here imports `training` or `app`.

What the service needs (the serving image ships only these):
    contract.py   the export contract: signature, input and output names, files
    classes.py    class names and the image shape
    layers.py     the custom Keras objects an exported model.keras names
What training, export and the tests need besides:
    builders/     the architectures' Keras builders (build_model, feature_layers)
    reference.py  the tutorial's layer math in NumPy, to check the Keras layers against
"""
