// kv.cu: new keys and values into the f16 KV cache.
//
// kv_write(k [n, kv_dim], v [n, kv_dim], kc, vc [cache_rows, kv_dim] f16 bits, rows [n], kv_dim, n):
//   kc[rows[t] * kv_dim + i] = f16(k[t * kv_dim + i]), and the same for v.
// Launch: any 1-D grid; a grid-stride loop over n * kv_dim. The cache offsets are size_t: a
// cache can pass 2^31 values. The rows are trusted (the launcher's caller computed them).

extern "C" __global__ void kv_write(const float* k, const float* v, unsigned short* kc, unsigned short* vc,
                                    const int* rows, int kv_dim, int n) {
    const size_t count = (size_t)n * kv_dim;
    for (size_t idx = grid_start(); idx < count; idx += grid_stride()) {
        const size_t t = idx / kv_dim;
        const size_t i = idx % kv_dim;
        const size_t dst = (size_t)rows[t] * kv_dim + i;
        kc[dst] = f32_to_f16(k[idx]);
        vc[dst] = f32_to_f16(v[idx]);
    }
}
