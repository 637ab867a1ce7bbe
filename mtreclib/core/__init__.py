"""The ground every room stands on: errors, atomic writes, typed settings, the feature schema, metrics,
progress lines, the device and the process group. Imports nothing else of mtreclib."""
