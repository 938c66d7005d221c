// quantize.cu: f32 activations to q8_1 blocks, the input of the quantized mat-vecs (mmvq.cu).
//
// quantize_q8_1(x [n, cols] f32, y [n, cols/32] q8_1, cols, n), cols % 32 == 0.
// Launch: grid (cols / 32, n), block 32: one warp per q8_1 block, one lane per value.
//
// Matches pupil's BlockQ8_1::quantize (quant/legacy/q8.rs), itself ggml's quantize_row_q8_1_ref:
// d = amax / 127, q = roundf(x / d) through the reciprocal (x * (1 / d)), s = f16(Σq * d) with
// the f32 d before it is rounded to f16. (ggml's CUDA quantizer puts Σx in s instead; no
// kernel here reads s, see mmvq.cu, so only the CPU agreement matters.)

extern "C" __global__ void quantize_q8_1(const float* x, block_q8_1* y, int cols, int n) {
    const int b = blockIdx.x;
    const int t = blockIdx.y;
    const int lane = threadIdx.x;
    const int blocks = cols / 32;
    if (b >= blocks || t >= n) return;

    const float v = x[(size_t)t * cols + (size_t)b * 32 + lane];
    // fmaxf with 0 as the CPU's fold starts: an all-NaN block gives d = 0, not NaN.
    const float amax = fmaxf(warp_reduce_max(fabsf(v)), 0.0f);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;

    // C's (int8_t) of roundf as x86 compiles it (pupil's c_float_to_int): NaN and values past
    // 2^31 become INT_MIN, whose low byte is 0. They arise only when 1/d overflows.
    const float r = roundf(v * id);
    const int q = (r != r || fabsf(r) >= 2147483648.0f) ? 0 : (int)(signed char)(int)r;

    const int sum = warp_reduce_sum(q);
    block_q8_1* out = y + (size_t)t * blocks + b;
    out->qs[lane] = (signed char)q;
    if (lane == 0) {
        out->d = f32_to_f16(d);
        out->s = f32_to_f16((float)sum * d);
    }
}
