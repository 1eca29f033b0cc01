"""COCO box evaluation equal to pycocotools, with image-bootstrap confidence intervals.

Modules: ``detections`` (Detections, Parquet/JSON files), ``ground_truth`` (annotation
arrays), ``coco_json`` (typed decoding of both JSON files), ``matching`` (per-image greedy
matching), ``accumulate`` (weighted precision/recall), ``coco_eval`` (``evaluate``),
``bootstrap`` (``bootstrap``, ``paired_bootstrap``), ``table`` (printing). Nothing is
re-exported here, so importing ``detections`` stays light.
"""
