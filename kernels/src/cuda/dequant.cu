// dequant.cu: weights to f16 for the prompt path's cuBLAS GEMM.
//
// dequant_<type>_f16(w [rows, cols], out [rows, cols] f16 bits, rows, cols):
//   out[r * cols + c] = f16(W[r][c]).
// convert_f32_f16(x, y, count): y[i] = f16(x[i]).
// Launch: any 1-D grid (the launcher uses block 256): every kernel is a grid-stride loop.
//
// A row is cols / VALUES consecutive blocks, so the whole matrix is one run of blocks and
// output value e of block b is out[b * VALUES + e]. The quantized kernels give each thread
// eight consecutive values (one 16-byte store). The values are computed as pupil's scalar
// dequantizers do (quant/legacy, quant/k_quants), with __fmul_rn / __fsub_rn where a fused
// multiply-add would round differently from them.

// Stores eight values at out[i..i+8] (i a multiple of 8): one 16-byte store when out is
// 16-byte aligned (device allocations are), else eight 2-byte stores.
__device__ __forceinline__ void store_f16x8(unsigned short* out, size_t i, const float (&v)[8]) {
    unsigned short h[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) h[j] = f32_to_f16(v[j]);
    if (((size_t)out & 15) == 0) {
        uint4 u;
        u.x = h[0] | ((unsigned int)h[1] << 16);
        u.y = h[2] | ((unsigned int)h[3] << 16);
        u.z = h[4] | ((unsigned int)h[5] << 16);
        u.w = h[6] | ((unsigned int)h[7] << 16);
        *(uint4*)(out + i) = u;
    } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) out[i + j] = h[j];
    }
}

// Per-type eighths: values 8k..8k+8 of block b.
struct deq_q4_0 {
    typedef block_q4_0 block;
    static constexpr int VALUES = 32;
    static __device__ __forceinline__ void eight(const block* b, int k, float (&v)[8]) {
        const float d = f16_to_f32(b->d);
        const int shift = k < 2 ? 0 : 4; // values 16.. are the high nibbles of bytes 0..
        const unsigned char* q = b->qs + 8 * (k % 2);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = (float)(((q[j] >> shift) & 0xf) - 8) * d;
    }
};

struct deq_q5_0 {
    typedef block_q5_0 block;
    static constexpr int VALUES = 32;
    static __device__ __forceinline__ void eight(const block* b, int k, float (&v)[8]) {
        const float d = f16_to_f32(b->d);
        const int shift = k < 2 ? 0 : 4;
        const unsigned char* q = b->qs + 8 * (k % 2);
        const unsigned int qh = load_u32_a2(b->qh) >> (8 * k);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int hi = (int)((qh >> j) & 1u) << 4;
            v[j] = (float)((((q[j] >> shift) & 0xf) | hi) - 16) * d;
        }
    }
};

struct deq_q8_0 {
    typedef block_q8_0 block;
    static constexpr int VALUES = 32;
    static __device__ __forceinline__ void eight(const block* b, int k, float (&v)[8]) {
        const float d = f16_to_f32(b->d);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = (float)b->qs[8 * k + j] * d;
    }
};

// Sub-block j's scale d·sc and offset dmin·m, for q4_k and q5_k (the same scales layout).
template <typename B>
__device__ __forceinline__ void k4_scale(const B* b, int j, float& dl, float& ml) {
    int sc, m;
    get_scale_min_k4(j, b->scales, sc, m);
    dl = __fmul_rn(f16_to_f32(b->d), (float)sc);
    ml = __fmul_rn(f16_to_f32(b->dmin), (float)m);
}

// Values e = 8k.. sit in sub-block j = e / 32 = k / 4: group g = j / 2, nibble j % 2, bytes
// 32g + e % 32.. (pupil's qs_pos in quant/k_quants/q4_k.rs).
struct deq_q4_k {
    typedef block_q4_k block;
    static constexpr int VALUES = 256;
    static __device__ __forceinline__ void eight(const block* b, int k, float (&v)[8]) {
        const int j = k / 4;
        float dl, ml;
        k4_scale(b, j, dl, ml);
        const unsigned char* q = b->qs + 32 * (j / 2) + 8 * (k % 4);
        const int shift = 4 * (j % 2);
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] = __fsub_rn(__fmul_rn(dl, (float)((q[i] >> shift) & 0xf)), ml);
    }
};

// As q4_k, with bit j of qh[e % 32] as the fifth bit.
struct deq_q5_k {
    typedef block_q5_k block;
    static constexpr int VALUES = 256;
    static __device__ __forceinline__ void eight(const block* b, int k, float (&v)[8]) {
        const int j = k / 4;
        float dl, ml;
        k4_scale(b, j, dl, ml);
        const int i0 = 8 * (k % 4);
        const unsigned char* q = b->qs + 32 * (j / 2) + i0;
        const unsigned char* qh = b->qh + i0;
        const int shift = 4 * (j % 2);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int quant = ((q[i] >> shift) & 0xf) | (((qh[i] >> j) & 1) << 4);
            v[i] = __fsub_rn(__fmul_rn(dl, (float)quant), ml);
        }
    }
};

// Values e = 8k.. = 128h + 32kk + i.. (header of quant/k_quants/q6_k.rs), one scale e / 16.
struct deq_q6_k {
    typedef block_q6_k block;
    static constexpr int VALUES = 256;
    static __device__ __forceinline__ void eight(const block* b, int k, float (&v)[8]) {
        const int e = 8 * k;
        const int h = e / 128, kk = (e % 128) / 32, i0 = e % 32;
        const unsigned char* ql = b->ql + 64 * h + 32 * (kk % 2) + i0;
        const unsigned char* qh = b->qh + 32 * h + i0;
        const int ls = 4 * (kk / 2), hs = 2 * kk;
        const float dl = __fmul_rn(f16_to_f32(b->d), (float)b->scales[e / 16]);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int quant = (((ql[i] >> ls) & 0xf) | (((qh[i] >> hs) & 3) << 4)) - 32;
            v[i] = __fmul_rn(dl, (float)quant);
        }
    }
};

template <class T>
__device__ __forceinline__ void dequant_blocks(const void* w, unsigned short* out, int rows, int cols) {
    const typename T::block* blocks = (const typename T::block*)w;
    constexpr int EIGHTS = T::VALUES / 8;
    const size_t count = (size_t)rows * (cols / T::VALUES) * EIGHTS;
    for (size_t i = grid_start(); i < count; i += grid_stride()) {
        float v[8];
        T::eight(blocks + i / EIGHTS, (int)(i % EIGHTS), v);
        store_f16x8(out, 8 * i, v);
    }
}

#define DEQUANT_KERNEL(name, T)                                                                     \
    extern "C" __global__ void name(const void* w, unsigned short* out, int rows, int cols) {       \
        dequant_blocks<T>(w, out, rows, cols);                                                      \
    }

DEQUANT_KERNEL(dequant_q4_0_f16, deq_q4_0)
DEQUANT_KERNEL(dequant_q5_0_f16, deq_q5_0)
DEQUANT_KERNEL(dequant_q8_0_f16, deq_q8_0)
DEQUANT_KERNEL(dequant_q4_k_f16, deq_q4_k)
DEQUANT_KERNEL(dequant_q5_k_f16, deq_q5_k)
DEQUANT_KERNEL(dequant_q6_k_f16, deq_q6_k)

// The float types, one value per thread: bf16 → f16 rounds once (bf16 has more exponent range:
// large values become inf, tiny ones f16 subnormals or zero).
extern "C" __global__ void dequant_bf16_f16(const void* w, unsigned short* out, int rows, int cols) {
    const unsigned short* in = (const unsigned short*)w;
    const size_t count = (size_t)rows * cols;
    for (size_t i = grid_start(); i < count; i += grid_stride()) out[i] = f32_to_f16(bf16_to_f32(in[i]));
}

extern "C" __global__ void dequant_f32_f16(const void* w, unsigned short* out, int rows, int cols) {
    const float* in = (const float*)w;
    const size_t count = (size_t)rows * cols;
    for (size_t i = grid_start(); i < count; i += grid_stride()) out[i] = f32_to_f16(in[i]);
}

extern "C" __global__ void convert_f32_f16(const float* x, unsigned short* y, int count) {
    for (size_t i = grid_start(); i < (size_t)count; i += grid_stride()) y[i] = f32_to_f16(x[i]);
}
