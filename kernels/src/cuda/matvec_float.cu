// matvec_float.cu: float weight × f32 activations for decode (1 ≤ n ≤ MMVQ_MAX_TOKENS tokens).
//
// mv_f16 / mv_bf16 / mv_f32(w [rows, cols], x [n, cols] f32, out [n, rows] f32, rows, cols, n):
//   out[t * rows + r] = Σ_c W[r][c] · X[t][c], accumulated in f32.
// Launch: grid ceil(rows / 4), block (32, 4), as mmvq.cu: one warp per row, one float per token
// in registers, a shuffle sum at the end.
//
// The lanes read eight consecutive weights at a time as one 16-byte load (two for f32) when
// cols % 8 == 0 and w and x are 16-byte aligned (device allocations are); any other shape runs
// the scalar loop, which also takes the tail, so every cols is correct.

// Per-type loads: eight weights from a 16-byte-aligned run, and one weight.
struct wload_f16 {
    static __device__ __forceinline__ void load8(const void* w, size_t i, float (&v)[8]) {
        const uint4 u = *(const uint4*)((const unsigned short*)w + i);
        const unsigned int p[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            v[2 * j] = f16_to_f32((unsigned short)(p[j] & 0xffff));
            v[2 * j + 1] = f16_to_f32((unsigned short)(p[j] >> 16));
        }
    }
    static __device__ __forceinline__ float load1(const void* w, size_t i) {
        return f16_to_f32(((const unsigned short*)w)[i]);
    }
};

struct wload_bf16 {
    static __device__ __forceinline__ void load8(const void* w, size_t i, float (&v)[8]) {
        const uint4 u = *(const uint4*)((const unsigned short*)w + i);
        const unsigned int p[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            v[2 * j] = __int_as_float((int)(p[j] << 16));
            v[2 * j + 1] = __int_as_float((int)(p[j] & 0xffff0000u));
        }
    }
    static __device__ __forceinline__ float load1(const void* w, size_t i) {
        return bf16_to_f32(((const unsigned short*)w)[i]);
    }
};

struct wload_f32 {
    static __device__ __forceinline__ void load8(const void* w, size_t i, float (&v)[8]) {
        const float4 a = *(const float4*)((const float*)w + i);
        const float4 b = *(const float4*)((const float*)w + i + 4);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
        v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    }
    static __device__ __forceinline__ float load1(const void* w, size_t i) {
        return ((const float*)w)[i];
    }
};

template <class L>
__device__ __forceinline__ void mv_rows(const void* w, const float* x, float* out, int rows, int cols, int n) {
    const int r = blockIdx.x * 4 + threadIdx.y;
    if (r >= rows) return; // the whole warp leaves together
    const int lane = threadIdx.x;
    const size_t base = (size_t)r * cols;

    float acc[MMVQ_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) acc[t] = 0.0f;

    const bool vec = cols % 8 == 0 && ((size_t)w & 15) == 0 && ((size_t)x & 15) == 0;
    const int cols8 = vec ? cols : 0;
    for (int c = 8 * lane; c < cols8; c += 8 * WARP_SIZE) {
        float v[8];
        L::load8(w, base + c, v);
#pragma unroll
        for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
            if (t < n) {
                const float* xt = x + (size_t)t * cols + c;
                const float4 a = *(const float4*)xt;
                const float4 b = *(const float4*)(xt + 4);
                acc[t] += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w +
                          v[4] * b.x + v[5] * b.y + v[6] * b.z + v[7] * b.w;
            }
        }
    }
    for (int c = cols8 + lane; c < cols; c += WARP_SIZE) {
        const float v = L::load1(w, base + c);
#pragma unroll
        for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
            if (t < n) acc[t] += v * x[(size_t)t * cols + c];
        }
    }

#pragma unroll
    for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
        if (t < n) {
            const float s = warp_reduce_sum(acc[t]);
            if (lane == 0) out[(size_t)t * rows + r] = s;
        }
    }
}

extern "C" __global__ void __launch_bounds__(128)
    mv_f16(const void* w, const float* x, float* out, int rows, int cols, int n) {
    mv_rows<wload_f16>(w, x, out, rows, cols, n);
}

extern "C" __global__ void __launch_bounds__(128)
    mv_bf16(const void* w, const float* x, float* out, int rows, int cols, int n) {
    mv_rows<wload_bf16>(w, x, out, rows, cols, n);
}

extern "C" __global__ void __launch_bounds__(128)
    mv_f32(const void* w, const float* x, float* out, int rows, int cols, int n) {
    mv_rows<wload_f32>(w, x, out, rows, cols, n);
}
