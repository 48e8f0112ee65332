"""The found network, out of the search: trained in full and tested once (retrain.py), exported as a folder
that loads anywhere and published to the Hub (export.py)."""
