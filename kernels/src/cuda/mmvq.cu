// mmvq.cu: quantized weight × q8_1 activations for decode (1 ≤ n ≤ MMVQ_MAX_TOKENS tokens),
// integer dot products with dp4a, after llama.cpp's MMVQ (ggml-cuda/mmvq.cu, vecdotq.cuh).
//
// mmvq_<type>(w [rows, cols] blocks, x [n, cols/32] q8_1, out [n, rows] f32, rows, cols, n,
// split): out[t * rows + r] = Σ_c W[r][c] · X[t][c].
// Launch: grid ceil(rows / (4 / split)), block (32, 4), split ∈ {1, 2, 4} warps per row (the
// host gives long rows 4). The lanes of a row's warps share out its blocks (LANES lanes per
// weight block, each with a fixed part of it), keep one float per token in registers, and
// meet in shuffle sums, then in shared memory. Each weight byte is read once for all n tokens.
//
// Where ggml folds the constant offsets (q4_0's -8, q5_0's -16, the k-quants' mins) into the
// f16 sum s of the q8_1 block, these kernels take the offset off each byte before the dp4a, or
// sum the activation bytes exactly with a dp4a against ones: the integer parts are then exact,
// and the q8_1 field s is never read.

// Per-type parts, vdot_<type>. Each describes one weight block type:
//   block    the struct;  VALUES  values per block;  LANES  lanes sharing one block;
//   dot(b, part, x, xs, n, acc)  adds, for every token t < n, lane `part`'s share of
//     block b · the activations (x: the q8_1 block under b's first value for token 0;
//     token t's is x + t * xs) to acc[t].

// 1 / 0x01010101 as a dp4a operand: the sum of four signed activation bytes.
#define ONES4 0x01010101

// The end of q4_0's and q5_0's dot: lane p's signed quants as four ints (values 8p..8p+8,
// then 16+8p..24+8p) against each token's activations, times d and the token's scale.
static __device__ __forceinline__ void dot_halves(int lo0, int lo1, int hi0, int hi1, float d, int p,
                                                  const block_q8_1* x, int xs, int n,
                                                  float (&acc)[MMVQ_MAX_TOKENS]) {
#pragma unroll
    for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
        if (t < n) {
            const block_q8_1* a = x + (size_t)t * xs;
            const int* aq = (const int*)a->qs;
            int s = __dp4a(lo0, aq[2 * p], 0);
            s = __dp4a(lo1, aq[2 * p + 1], s);
            s = __dp4a(hi0, aq[4 + 2 * p], s);
            s = __dp4a(hi1, aq[5 + 2 * p], s);
            acc[t] += d * f16_to_f32(a->d) * (float)s;
        }
    }
}

// q4_0: two lanes per block, lane p holds qs bytes 8p..8p+8, i.e. values 8p..8p+8 (low nibbles)
// and 16+8p..24+8p (high nibbles).
struct vdot_q4_0 {
    typedef block_q4_0 block;
    static constexpr int VALUES = 32;
    static constexpr int LANES = 2;

    static __device__ __forceinline__ void dot(const block* b, int p, const block_q8_1* x, int xs, int n,
                                               float (&acc)[MMVQ_MAX_TOKENS]) {
        const unsigned int w0 = load_u32_a2(b->qs + 8 * p);
        const unsigned int w1 = load_u32_a2(b->qs + 8 * p + 4);
        // Bytes 0..15 minus 8 wrap to the signed bytes -8..7 that dp4a reads.
        const int lo0 = __vsub4(w0 & 0x0f0f0f0f, 0x08080808);
        const int lo1 = __vsub4(w1 & 0x0f0f0f0f, 0x08080808);
        const int hi0 = __vsub4((w0 >> 4) & 0x0f0f0f0f, 0x08080808);
        const int hi1 = __vsub4((w1 >> 4) & 0x0f0f0f0f, 0x08080808);
        dot_halves(lo0, lo1, hi0, hi1, f16_to_f32(b->d), p, x, xs, n, acc);
    }
};

// q5_0: as q4_0, with the fifth bit of value j taken from bit j of qh.
struct vdot_q5_0 {
    typedef block_q5_0 block;
    static constexpr int VALUES = 32;
    static constexpr int LANES = 2;

    static __device__ __forceinline__ void dot(const block* b, int p, const block_q8_1* x, int xs, int n,
                                               float (&acc)[MMVQ_MAX_TOKENS]) {
        const unsigned int w0 = load_u32_a2(b->qs + 8 * p);
        const unsigned int w1 = load_u32_a2(b->qs + 8 * p + 4);
        const unsigned int qh = load_u32_a2(b->qh);
        const int lo0 = __vsub4((w0 & 0x0f0f0f0f) | spread_bit4(qh >> (8 * p)), 0x10101010);
        const int lo1 = __vsub4((w1 & 0x0f0f0f0f) | spread_bit4(qh >> (8 * p + 4)), 0x10101010);
        const int hi0 = __vsub4(((w0 >> 4) & 0x0f0f0f0f) | spread_bit4(qh >> (16 + 8 * p)), 0x10101010);
        const int hi1 = __vsub4(((w1 >> 4) & 0x0f0f0f0f) | spread_bit4(qh >> (20 + 8 * p)), 0x10101010);
        dot_halves(lo0, lo1, hi0, hi1, f16_to_f32(b->d), p, x, xs, n, acc);
    }
};

// q8_0: two lanes per block, lane p holds values 16p..16p+16.
struct vdot_q8_0 {
    typedef block_q8_0 block;
    static constexpr int VALUES = 32;
    static constexpr int LANES = 2;

    static __device__ __forceinline__ void dot(const block* b, int p, const block_q8_1* x, int xs, int n,
                                               float (&acc)[MMVQ_MAX_TOKENS]) {
        int w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = (int)load_u32_a2(b->qs + 16 * p + 4 * i);
        const float d = f16_to_f32(b->d);
#pragma unroll
        for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
            if (t < n) {
                const block_q8_1* a = x + (size_t)t * xs;
                const int* aq = (const int*)a->qs + 4 * p;
                int s = 0;
#pragma unroll
                for (int i = 0; i < 4; ++i) s = __dp4a(w[i], aq[i], s);
                acc[t] += d * f16_to_f32(a->d) * (float)s;
            }
        }
    }
};

// The nibbles, fifth bits and scales one lane of a q4_k / q5_k block works on. Lane p (0..16)
// takes group g = p / 4 (values 64g..64g+64, sub-blocks 2g and 2g+1) and within it the eight
// positions i = 8 (p % 4) .. +8: qs bytes 32g + i, low nibbles in sub-block 2g, high in 2g+1.
struct k4_part {
    int lo[2], hi[2];    // quants of sub-blocks 2g and 2g+1, four bytes each
    float dsc_lo, dm_lo; // d * scale and dmin * min of sub-block 2g
    float dsc_hi, dm_hi; // the same for 2g+1
    int g, i4;           // group, and the first position as an int index (i / 4)
};

// Σ over the lane's values of (d sc q - dmin m) · activation, for one token: per sub-block the
// integer dot and the integer sum of the activations, scaled by the q8_1 block's d.
__device__ __forceinline__ float k4_token(const k4_part& k, const block_q8_1* a) {
    const block_q8_1* a0 = a + 2 * k.g;
    const block_q8_1* a1 = a0 + 1;
    const int* q0 = (const int*)a0->qs + k.i4;
    const int* q1 = (const int*)a1->qs + k.i4;
    const int dot0 = __dp4a(k.lo[1], q0[1], __dp4a(k.lo[0], q0[0], 0));
    const int sum0 = __dp4a(ONES4, q0[1], __dp4a(ONES4, q0[0], 0));
    const int dot1 = __dp4a(k.hi[1], q1[1], __dp4a(k.hi[0], q1[0], 0));
    const int sum1 = __dp4a(ONES4, q1[1], __dp4a(ONES4, q1[0], 0));
    return f16_to_f32(a0->d) * (k.dsc_lo * (float)dot0 - k.dm_lo * (float)sum0) +
           f16_to_f32(a1->d) * (k.dsc_hi * (float)dot1 - k.dm_hi * (float)sum1);
}

// The scales, d and the byte positions of lane p, shared by q4_k and q5_k.
template <class B>
__device__ __forceinline__ k4_part k4_setup(const B* b, int p) {
    k4_part k;
    k.g = p / 4;
    k.i4 = 2 * (p % 4);
    int sc, m;
    const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
    get_scale_min_k4(2 * k.g, b->scales, sc, m);
    k.dsc_lo = d * (float)sc;
    k.dm_lo = dmin * (float)m;
    get_scale_min_k4(2 * k.g + 1, b->scales, sc, m);
    k.dsc_hi = d * (float)sc;
    k.dm_hi = dmin * (float)m;
    const unsigned int w0 = load_u32_a4(b->qs + 32 * k.g + 4 * k.i4);
    const unsigned int w1 = load_u32_a4(b->qs + 32 * k.g + 4 * k.i4 + 4);
    k.lo[0] = w0 & 0x0f0f0f0f;
    k.lo[1] = w1 & 0x0f0f0f0f;
    k.hi[0] = (w0 >> 4) & 0x0f0f0f0f;
    k.hi[1] = (w1 >> 4) & 0x0f0f0f0f;
    return k;
}

// q4_k: sixteen lanes per 256-value block (k4_part); quants 0..15, no offset.
struct vdot_q4_k {
    typedef block_q4_k block;
    static constexpr int VALUES = 256;
    static constexpr int LANES = 16;

    static __device__ __forceinline__ void dot(const block* b, int p, const block_q8_1* x, int xs, int n,
                                               float (&acc)[MMVQ_MAX_TOKENS]) {
        const k4_part k = k4_setup(b, p);
#pragma unroll
        for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
            if (t < n) acc[t] += k4_token(k, x + (size_t)t * xs);
        }
    }
};

// q5_k: as q4_k, plus bit 2g (low nibbles) or 2g+1 (high) of qh bytes i..i+8 as bit 4.
struct vdot_q5_k {
    typedef block_q5_k block;
    static constexpr int VALUES = 256;
    static constexpr int LANES = 16;

    static __device__ __forceinline__ void dot(const block* b, int p, const block_q8_1* x, int xs, int n,
                                               float (&acc)[MMVQ_MAX_TOKENS]) {
        k4_part k = k4_setup(b, p);
        const unsigned int h0 = load_u32_a4(b->qh + 4 * k.i4);
        const unsigned int h1 = load_u32_a4(b->qh + 4 * k.i4 + 4);
        k.lo[0] |= ((h0 >> (2 * k.g)) & ONES4) << 4;
        k.lo[1] |= ((h1 >> (2 * k.g)) & ONES4) << 4;
        k.hi[0] |= ((h0 >> (2 * k.g + 1)) & ONES4) << 4;
        k.hi[1] |= ((h1 >> (2 * k.g + 1)) & ONES4) << 4;
#pragma unroll
        for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
            if (t < n) acc[t] += k4_token(k, x + (size_t)t * xs);
        }
    }
};

// q6_k: sixteen lanes per block. Lane p takes half h = p / 8 and positions i = 4 (p % 8) .. +4
// of all four quarters k (values 128h + 32k + i): one int of ql per pair of quarters, one of
// qh for all four, and one scale per quarter (sub-block 8h + 2k + i / 16).
struct vdot_q6_k {
    typedef block_q6_k block;
    static constexpr int VALUES = 256;
    static constexpr int LANES = 16;

    static __device__ __forceinline__ void dot(const block* b, int p, const block_q8_1* x, int xs, int n,
                                               float (&acc)[MMVQ_MAX_TOKENS]) {
        const int h = p / 8;
        const int i4 = p % 8; // int index of position i within a 32-value quarter
        const unsigned int l02 = load_u32_a2(b->ql + 64 * h + 4 * i4);      // quarters 0 (low), 2 (high)
        const unsigned int l13 = load_u32_a2(b->ql + 64 * h + 32 + 4 * i4); // quarters 1, 3
        const unsigned int hb = load_u32_a2(b->qh + 32 * h + 4 * i4);
        const unsigned int low[4] = {l02 & 0x0f0f0f0f, l13 & 0x0f0f0f0f, (l02 >> 4) & 0x0f0f0f0f, (l13 >> 4) & 0x0f0f0f0f};
        int q[4];
        int sc[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            // 6-bit quants 0..63 minus 32 wrap to the signed bytes -32..31.
            q[k] = __vsub4(low[k] | (((hb >> (2 * k)) & 0x03030303) << 4), 0x20202020);
            sc[k] = b->scales[8 * h + 2 * k + i4 / 4];
        }
        const float d = f16_to_f32(b->d);
#pragma unroll
        for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
            if (t < n) {
                const block_q8_1* a = x + (size_t)t * xs + 4 * h;
                float s = 0.0f;
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    const int dot = __dp4a(q[k], ((const int*)a[k].qs)[i4], 0);
                    s += f16_to_f32(a[k].d) * (float)(sc[k] * dot);
                }
                acc[t] += d * s;
            }
        }
    }
};

// The row loop shared by every type. `split` warps (1, 2 or 4) share a row, so that a long
// row has four warps' loads in flight rather than one warp walking it alone; the block's four
// warps hold 4 / split rows. Warp k of a row takes blocks k * 32 / LANES + ... in steps of
// split * 32 / LANES (lanes keep their part of a block: 32 is a multiple of LANES), each warp
// sums its share in a shuffle, and the row's first warp adds the shares in warp order. The
// order depends on the row's shape only, never on n: a token's result is the same in any batch.
template <class T>
__device__ __forceinline__ void mmvq_rows(const void* w, const block_q8_1* x, float* out, int rows, int cols, int n,
                                          int split) {
    __shared__ float shares[4][MMVQ_MAX_TOKENS];
    const int r = blockIdx.x * (4 / split) + threadIdx.y / split;
    const int k = threadIdx.y % split;
    const int lane = threadIdx.x;
    const int nb = cols / T::VALUES;
    const int xs = cols / 32; // q8_1 blocks per token

    float acc[MMVQ_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) acc[t] = 0.0f;

    if (r < rows) {
        const typename T::block* row = (const typename T::block*)w + (size_t)r * nb;
        const int part = lane % T::LANES;
        const int step = split * (WARP_SIZE / T::LANES);
        for (int ib = (k * WARP_SIZE + lane) / T::LANES; ib < nb; ib += step) {
            T::dot(row + ib, part, x + (size_t)ib * (T::VALUES / 32), xs, n, acc);
        }
    }

#pragma unroll
    for (int t = 0; t < MMVQ_MAX_TOKENS; ++t) {
        if (t < n) {
            const float s = warp_reduce_sum(acc[t]);
            if (lane == 0) shares[threadIdx.y][t] = s;
        }
    }
    __syncthreads(); // every thread gets here: rows past the end only skip their loads
    if (r < rows && k == 0 && lane < n) {
        float s = shares[threadIdx.y][lane];
        for (int j = 1; j < split; ++j) s += shares[threadIdx.y + j][lane];
        out[(size_t)lane * rows + r] = s;
    }
}

#define MMVQ_KERNEL(name, T)                                                                        \
    extern "C" __global__ void __launch_bounds__(128)                                               \
        name(const void* w, const block_q8_1* x, float* out, int rows, int cols, int n, int split) { \
        mmvq_rows<T>(w, x, out, rows, cols, n, split);                                              \
    }

MMVQ_KERNEL(mmvq_q4_0, vdot_q4_0)
MMVQ_KERNEL(mmvq_q5_0, vdot_q5_0)
MMVQ_KERNEL(mmvq_q8_0, vdot_q8_0)
MMVQ_KERNEL(mmvq_q4_k, vdot_q4_k)
MMVQ_KERNEL(mmvq_q5_k, vdot_q5_k)
MMVQ_KERNEL(mmvq_q6_k, vdot_q6_k)
