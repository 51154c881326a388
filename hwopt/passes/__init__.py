"""Graph passes. Importing this package registers every pass; the import order below is the
order of ``hwopt passes`` and of any pipeline assembled from names."""

from hwopt.passes import (  # noqa: F401
    simplify,
    fold_constants,
    eliminate_dead_code,
    deduplicate_constants,
    eliminate_common_subexpressions,
    fold_batchnorm,
)
