"""Graph passes. Importing this package registers every pass, in pipeline order."""

from hwopt.passes import simplify  # noqa: F401
