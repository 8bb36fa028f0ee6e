"""Trainer formats, file and Hub writers, and the dataset card."""
