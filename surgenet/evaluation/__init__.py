"""Scoring models: the task metrics, the frozen-backbone probes, and the figures beside the tables.

* :mod:`~surgenet.evaluation.metrics` - segmentation, phase and multi-label metrics, in numpy;
* :mod:`~surgenet.evaluation.probes` - kNN and linear-probe accuracy of a frozen backbone;
* :mod:`~surgenet.evaluation.plots` - precision-recall curves, phase timelines, confusion matrices.

Evaluating a fine-tuned model on a labelled dataset (``surgenet evaluate``) reads the dataset
formats of the training extra; that glue lives in :mod:`surgenet.train.task_eval`.
"""
