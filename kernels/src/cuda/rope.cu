// rope.cu: rotary position embedding, in place.
//
// rope(x [n_tokens, n_heads * head_dim], angles [n_tokens, n_dims] as (cos, sin) pairs,
//      n_tokens, n_heads, head_dim, n_dims, neox)
// Launch: any 1-D grid; a grid-stride loop over n_tokens * n_heads * (n_dims / 2) pairs.
//
// As ops/rope.rs Rope::apply: pair i < n_dims / 2 is (i, i + n_dims / 2) if neox, else
// (2i, 2i + 1), turned by angle i of the token; values past n_dims are left alone. The
// products are rounded separately (no fused multiply-add) to give the CPU's bits.

extern "C" __global__ void rope(float* x, const float* angles, int n_tokens, int n_heads, int head_dim, int n_dims,
                                int neox) {
    const int half = n_dims / 2;
    const size_t count = (size_t)n_tokens * n_heads * half;
    for (size_t idx = grid_start(); idx < count; idx += grid_stride()) {
        const int i = (int)(idx % half);
        const size_t head = idx / half; // token * n_heads + head, the head's row in x
        const size_t token = head / n_heads;
        const float cos_ = angles[token * n_dims + 2 * i];
        const float sin_ = angles[token * n_dims + 2 * i + 1];
        float* h = x + head * head_dim;
        const int a = neox ? i : 2 * i;
        const int b = neox ? i + half : 2 * i + 1;
        const float x0 = h[a], x1 = h[b];
        h[a] = __fsub_rn(__fmul_rn(x0, cos_), __fmul_rn(x1, sin_));
        h[b] = __fadd_rn(__fmul_rn(x0, sin_), __fmul_rn(x1, cos_));
    }
}
