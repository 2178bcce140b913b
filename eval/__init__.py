"""Evaluation floor: the data model (queries, qrels, runs), datasets, measures and reports.

It reads runs and qrels and knows nothing about how a run was made: no import of `rankers` or `pipelines`.
"""
