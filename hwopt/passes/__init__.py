"""Graph passes, one module each; hwopt.passes.registry imports them on first use."""
