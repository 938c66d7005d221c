// elementwise.cu: the pointwise ops of the forward pass, in place on f32.
//
// silu(x, count), gelu_tanh(x, count), mul(x, y, count), add(x, y, count), scale(x, s, count),
// softcap(x, cap, count), add_bias(x [n, rows], b [rows], rows, n).
// Launch: any 1-D grid; every kernel is a grid-stride loop over its elements.
//
// Formulas as ops/activation.rs and ops/gelu_f16.rs. GPU expf and tanhf are within 2 ulp, not
// libm's bits, so these agree with the CPU to rounding.

// x / (1 + e^-x).
extern "C" __global__ void silu(float* x, int count) {
    for (size_t i = grid_start(); i < (size_t)count; i += grid_stride()) {
        const float v = x[i];
        x[i] = v / (1.0f + expf(-v));
    }
}

// The tanh GELU of ggml_gelu_f32, each product rounded as the CPU's.
__device__ __forceinline__ float gelu_f32(float x) {
    const float sqrt_2_over_pi = 0.7978846f;
    const float coef_a = 0.044715f;
    const float inner = __fmul_rn(__fmul_rn(sqrt_2_over_pi, x), __fadd_rn(1.0f, __fmul_rn(__fmul_rn(coef_a, x), x)));
    return __fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, tanhf(inner)));
}

// ggml's f16-table GELU (ops/gelu_f16.rs): x <= -10 → 0, x >= 10 → x, otherwise the input and
// the result each rounded to f16, as ggml's table lookup does.
extern "C" __global__ void gelu_tanh(float* x, int count) {
    for (size_t i = grid_start(); i < (size_t)count; i += grid_stride()) {
        const float v = x[i];
        if (v <= -10.0f) {
            x[i] = 0.0f;
        } else if (v >= 10.0f) {
            x[i] = v;
        } else {
            x[i] = f16_to_f32(f32_to_f16(gelu_f32(f16_to_f32(f32_to_f16(v)))));
        }
    }
}

extern "C" __global__ void mul(float* x, const float* y, int count) {
    for (size_t i = grid_start(); i < (size_t)count; i += grid_stride()) x[i] *= y[i];
}

extern "C" __global__ void add(float* x, const float* y, int count) {
    for (size_t i = grid_start(); i < (size_t)count; i += grid_stride()) x[i] += y[i];
}

extern "C" __global__ void scale(float* x, float s, int count) {
    for (size_t i = grid_start(); i < (size_t)count; i += grid_stride()) x[i] *= s;
}

// cap · tanh(x / cap) (Gemma 2's attention and final logits).
extern "C" __global__ void softcap(float* x, float cap, int count) {
    for (size_t i = grid_start(); i < (size_t)count; i += grid_stride()) x[i] = cap * tanhf(x[i] / cap);
}

// x[t * rows + r] += b[r] for the n rows of x.
extern "C" __global__ void add_bias(float* x, const float* b, int rows, int n) {
    const size_t count = (size_t)rows * n;
    for (size_t i = grid_start(); i < count; i += grid_stride()) x[i] += b[i % rows];
}
