"""Graph passes. Importing this package registers every pass, in pipeline order."""

from hwopt.passes import fold_batchnorm, simplify  # noqa: F401
