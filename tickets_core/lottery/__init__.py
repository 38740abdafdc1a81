"""The lottery-ticket experiment: what identifies a run, what each level of each run kind does, and the driver
that runs the levels into a run folder.  :mod:`~tickets_core.lottery.identity` is torch-free."""
