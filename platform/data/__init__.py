"""COCO-format data: categories, image decoding, transforms, datasets and samplers."""
