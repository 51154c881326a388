"""INT8 quantization: calibration data, and the search for what to quantize."""
