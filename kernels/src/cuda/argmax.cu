// argmax.cu: greedy sampling on the device, the index of each row's largest value.
//
// argmax(x [rows, cols], cols, out [rows] int)
// Launch: grid = rows, block 256 (any multiple of 32 up to 1024 works): one block per row.
//
// The same answer as the CPU's sample::argmax: the first index of the maximum; NaN never
// compares greater so never wins; a row with nothing above -inf gives 0.

// The better of two candidates: the larger value, the lower index between equals.
__device__ __forceinline__ void argmax_merge(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) {
        v = ov;
        i = oi;
    }
}

extern "C" __global__ void argmax(const float* x, int cols, int* out) {
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    const float* row = x + (size_t)blockIdx.x * cols;
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;

    // Ascending scan with a strict >: each thread keeps its first maximum.
    float v = NEG_INF;
    int i = 0x7fffffff;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float e = row[c];
        if (e > v) {
            v = e;
            i = c;
        }
    }
#pragma unroll
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        argmax_merge(v, i, ov, oi);
    }
    if (lane == 0) {
        best_v[warp] = v;
        best_i[warp] = i;
    }
    __syncthreads();
    if (warp == 0) {
        const int warps = (blockDim.x + WARP_SIZE - 1) / WARP_SIZE;
        v = lane < warps ? best_v[lane] : NEG_INF;
        i = lane < warps ? best_i[lane] : 0x7fffffff;
#pragma unroll
        for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, v, o);
            const int oi = __shfl_xor_sync(0xffffffffu, i, o);
            argmax_merge(v, i, ov, oi);
        }
        if (lane == 0) out[blockIdx.x] = v > NEG_INF ? i : 0;
    }
}
