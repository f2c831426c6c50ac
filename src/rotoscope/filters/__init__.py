"""Style filters: a style image with its provenance, made into a model that any picture can go through.

Modules: ``card`` (filter.json), ``catalogue`` (the studio's filters), ``make`` (the train stage),
``train`` + ``network`` + ``lossnet`` (trained filters, TensorFlow/Keras), ``instant`` (Magenta's
arbitrary-style networks, ONNX), ``apply`` (one way to apply either kind to a picture).
TensorFlow is imported only where a trained network is built, trained or run.
"""
