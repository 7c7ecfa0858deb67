"""Object detection transfer: ground truth and detection records, the voc07 and coco evaluators."""
