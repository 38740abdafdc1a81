"""Run folders on disk: their paths, their status, and walking a folder of runs.  Torch- and pandas-free."""
