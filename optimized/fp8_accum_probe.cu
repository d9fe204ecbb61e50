// Placeholder: the GPU calibration of the FP8 accumulation model lands in the next commit.
void dsv3_register_fp8_accum_cuda() {}
