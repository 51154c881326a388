"""Memory: liveness of activations, static buffer planning, memory-aware scheduling, and
measured resident memory of onnxruntime sessions."""
