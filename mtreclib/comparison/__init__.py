"""The results table: run every (model, strategy, dataset, seed), then summarise the runs as tables and plots.

``runner`` runs and resumes a benchmark, one JSON per run (``settings`` says which runs may be
mixed, ``machine`` where a run ran); ``runs`` reads them back as ``RunRecord``s; ``summary``
groups them per dataset and (model, strategy); ``stats`` holds spreads and the significance
test; ``table`` renders Markdown and CSV; ``plots`` draws the PNGs; ``files`` writes every
output atomically.
"""
