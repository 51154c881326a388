"""Every input hwopt runs a model on, and where it came from.

- ``inputs``: input specs (concrete shapes for symbolic dimensions), one feed loaded from a
  user's file or generated from a seed, a second batch size, size limits;
- ``kinds``: what a generated input should hold, read from the graph (token ids spread over the
  table they index, masks of ones, ...), so generated feeds are realistic where the graph says how;
- ``images``: photos and other images turned into an input as ``[calibration.image]`` says;
- ``samples``: sets of samples (a folder or stacked file, or generated) for INT8 calibration and
  the held-out accuracy check;
- ``sources``: which of these a run uses for its checks and its calibration, by the options;
- ``shared``: the inputs several models share and the feed sets, one per batch size, that
  every variant of a ``hwopt bench`` comparison runs on.
"""
