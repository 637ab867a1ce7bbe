"""Typed configuration: settings declared once, as frozen dataclasses, viewed as flags, files and Python.

``settings`` is the mechanism (a setting's type, default, help and bounds, checked where it is
defined); ``experiment`` holds the configuration of a run, one object per concern (data,
training, run) plus the model's own; ``flags`` turns them into command-line flags and
``files`` reads them from YAML.
"""
