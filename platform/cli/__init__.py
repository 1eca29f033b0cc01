"""The ``sparse-rcnn`` command line."""
