"""Thin Celery tasks: load ids, call one function of `pipeline`, decide retry or fail."""
