"""The results table: run every (model, dataset, seed), then summarise the runs as tables and plots.

``runner`` runs and resumes a benchmark, one JSON per run; ``runs`` reads them back; ``stats``
holds means, spreads and the significance test; ``table`` renders Markdown and CSV; ``plots``
draws the PNGs.
"""
