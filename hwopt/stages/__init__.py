"""The stages of one ``hwopt optimize`` build, in the order hwopt.optimize runs them per target.

- ``context``: what every target of a run shares (model, check feeds, reference outputs,
  rounding noise, the graph pipelines already run);
- ``graphs``: the float graphs a build may ship (the verified pipeline, measured variants);
- ``precision``: FP32 or INT8, by measurement (hwopt.quant.choose);
- ``target``: one target's build from those, through the target's last step (hwopt.targets);
- ``memory``: where the weights live and which memory settings deploy, measured;
- ``measure``: partition, latency and the memory report of a written build;
- ``files``: the build folder's files (model, memory plan, build.json, reports).
"""
