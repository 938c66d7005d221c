// prelude.cu: what every kernel file shares. The Rust side concatenates this file and then the
// kernel files into one NVRTC program, so nothing here may #include anything (NVRTC's wheel
// ships no headers): the block structs, f16/bf16 conversion, warp reductions, unaligned loads.
//
// Block layouts are ggml's `ggml-common.h`, mirrored by kernels/src/quant/blocks.rs; the
// static_asserts below fail the NVRTC compile if a field is added or resized by mistake.

// Tokens one mat-vec launch handles: per-token accumulators live in registers, float acc[8].
#define MMVQ_MAX_TOKENS 8

#define WARP_SIZE 32

// -INFINITY without math.h.
#define NEG_INF (__int_as_float(0xff800000))

// ---------------------------------------------------------------------------------------------
// Block structs. All hold f16 scales as raw bits (unsigned short), so their alignment is 2:
// never read a 4-byte word out of one by a plain cast unless the offset is known to be 4-aligned
// (see load_u32_a2 below).

// x = d * (q - 8); byte j holds element j (low nibble) and j + 16 (high nibble).
struct block_q4_0 {
    unsigned short d;
    unsigned char qs[16];
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 is 18 bytes");

// x = d * (q - 16); nibbles as q4_0, fifth bit of element j is bit j of qh (little-endian).
struct block_q5_0 {
    unsigned short d;
    unsigned char qh[4];
    unsigned char qs[16];
};
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 is 22 bytes");

// x = d * q.
struct block_q8_0 {
    unsigned short d;
    signed char qs[32];
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes");

// Activations of the quantized mat-vec: x = d * q, and s = d * sum(q). 36 bytes keep every
// block 4-aligned in a 4-aligned buffer, so qs may be read as ints.
struct block_q8_1 {
    unsigned short d;
    unsigned short s;
    signed char qs[32];
};
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 is 36 bytes");

// 8 sub-blocks of 32: x = d * sc * q - dmin * m, (sc, m) 6 bits each packed in scales
// (get_scale_min_k4 below). Element e = 64 g + 32 hi + i sits in qs[32 g + i], nibble hi.
struct block_q4_k {
    unsigned short d;
    unsigned short dmin;
    unsigned char scales[12];
    unsigned char qs[128];
};
static_assert(sizeof(block_q4_k) == 144, "block_q4_k is 144 bytes");

// As q4_k, plus the fifth bit of element e in bit e / 32 of qh[e % 32].
struct block_q5_k {
    unsigned short d;
    unsigned short dmin;
    unsigned char scales[12];
    unsigned char qh[32];
    unsigned char qs[128];
};
static_assert(sizeof(block_q5_k) == 176, "block_q5_k is 176 bytes");

// 16 sub-blocks of 16: x = d * scales[e / 16] * (q - 32). For e = 128 h + 32 k + i:
// low 4 bits in ql[64 h + 32 (k % 2) + i] >> 4 (k / 2), high 2 in qh[32 h + i] >> 2 k.
struct block_q6_k {
    unsigned char ql[128];
    unsigned char qh[64];
    signed char scales[16];
    unsigned short d;
};
static_assert(sizeof(block_q6_k) == 210, "block_q6_k is 210 bytes");

// ---------------------------------------------------------------------------------------------
// Number conversion. The PTX cvt instructions are exact IEEE conversions (round to nearest
// even, subnormals and infinities kept), with no header needed.

__device__ __forceinline__ float f16_to_f32(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// A NaN becomes ggml's canonical 0x7e00 with its sign (pupil's `fp16`), where cvt would give
// 0x7fff; everything else is cvt.rn.
__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    if (f != f) {
        return (unsigned short)(((unsigned int)__float_as_int(f) >> 16) & 0x8000u) | 0x7e00u;
    }
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_to_f32(unsigned short b) {
    return __int_as_float((int)((unsigned int)b << 16));
}

// ---------------------------------------------------------------------------------------------
// Loads.

// A 32-bit word from memory that is only 2-byte aligned (inside q4_0, q5_0, q8_0 and q6_k
// blocks, whose sizes are not multiples of 4). Little-endian, as the bytes lie.
__device__ __forceinline__ unsigned int load_u32_a2(const void* p) {
    const unsigned short* h = (const unsigned short*)p;
    return (unsigned int)h[0] | ((unsigned int)h[1] << 16);
}

// A 32-bit word from 4-aligned memory (q8_1 quants, q4_k and q5_k blocks).
__device__ __forceinline__ unsigned int load_u32_a4(const void* p) {
    return *(const unsigned int*)p;
}

// Spreads the low 4 bits of u to bit 4 of each byte: the fifth bits of four 5-bit quants.
__device__ __forceinline__ unsigned int spread_bit4(unsigned int u) {
    return ((u & 1u) << 4) | ((u & 2u) << 11) | ((u & 4u) << 18) | ((u & 8u) << 25);
}

// Scale and min j (0..8) of a q4_k / q5_k block: ggml's get_scale_min_k4 (ggml-quants.c),
// pupil's scale_min_k4 (quant/k_quants/mod.rs).
__device__ __forceinline__ void get_scale_min_k4(int j, const unsigned char* s, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// ---------------------------------------------------------------------------------------------
// Warp reductions (every lane gets the result).

// For float, double and int.
template <typename T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
#pragma unroll
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// fmaxf ignores a NaN operand, as Rust's f32::max does in the CPU reference.
__device__ __forceinline__ float warp_reduce_max(float v) {
#pragma unroll
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Index of the first element of a grid-stride loop, and the stride, as size_t: the tensors
// (a vocabulary-sized output, a whole KV cache) can pass 2^31 elements.
__device__ __forceinline__ size_t grid_start() {
    return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ size_t grid_stride() {
    return (size_t)gridDim.x * blockDim.x;
}
