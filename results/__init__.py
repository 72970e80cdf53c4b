"""Loaders and comparison of run records from every platform. Imports no TensorFlow and no adapter."""
