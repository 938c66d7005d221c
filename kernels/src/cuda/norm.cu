// norm.cu: RMS normalisation, out = x / sqrt(mean(x²) + eps) * w, row by row.
//
// rms_norm(x [rows, cols], w [cols], out [rows, cols], cols, eps); out may be x itself.
// Launch: grid = rows, block 256 (any multiple of 32 up to 1024 works): one block per row.
//
// As the CPU reference (ops/norm.rs): each square is rounded to f32 and summed in f64, the
// mean rounded to f32, s = 1 / sqrtf(mean + eps) in IEEE f32, out = (x * s) * w. Every thread
// reads its values before the barrier and writes only those same values after it, so in place
// is safe.

extern "C" __global__ void rms_norm(const float* x, const float* w, float* out, int cols, float eps) {
    __shared__ double partial[32];
    const size_t row = (size_t)blockIdx.x * cols;
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;

    double sum = 0.0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = x[row + c];
        sum += (double)__fmul_rn(v, v);
    }
    sum = warp_reduce_sum(sum);
    if (lane == 0) partial[warp] = sum;
    __syncthreads();
    if (warp == 0) {
        const int warps = (blockDim.x + WARP_SIZE - 1) / WARP_SIZE;
        double s = lane < warps ? partial[lane] : 0.0;
        s = warp_reduce_sum(s);
        if (lane == 0) partial[0] = s;
    }
    __syncthreads();

    const float mean = (float)(partial[0] / (double)cols);
    const float s = 1.0f / sqrtf(mean + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        out[row + c] = __fmul_rn(x[row + c], s) * w[c];
    }
}
