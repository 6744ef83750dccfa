"""The composed config, checked up front against what each layer can build, before any data or Keras.

It sits above the layers it asks (training, data, runtime, losses) and below the recipes and the
command line, which both check a config through it; nothing below imports it.
"""
