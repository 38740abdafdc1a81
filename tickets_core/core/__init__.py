"""The floor every other folder stands on: errors, atomic file I/O, locks, parameter declarations, the run
config, the run-kind registry and the registry helper.  Imports neither torch nor pandas."""
