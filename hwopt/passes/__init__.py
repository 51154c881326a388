"""Graph passes. Importing this package registers every pass; the import order below is the
order of ``hwopt passes``."""

from hwopt.passes import (  # noqa: F401
    upgrade_opset,
    simplify,
    fold_constants,
    eliminate_dead_code,
    deduplicate_constants,
    remove_noops,
    simplify_shape_ops,
    fold_batchnorm,
    fold_pad,
    fold_scale_shift,
    matmul_add_to_gemm,
    fuse_activations,
    fuse_layernorm,
    eliminate_common_subexpressions,
    localize_initializers,
)
