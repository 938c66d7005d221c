// attention.cu: attention of query tokens over the f16 KV cache, split-K ("flash decoding"):
// attend_split cuts each token's span of cache rows into parts of ATTEND_CHUNK rows and
// reduces each part with an online softmax; attend_merge combines the parts. The parts of a
// token depend on its own span alone, never on the other tokens of the launch (parts past
// its span are empty and add exact zeros in the merge), so a token's result is the same bits
// whatever batch it is in.
//
// attend_split(q [n, n_head * head_dim], kc, vc [rows, n_head_kv * head_dim] f16 bits,
//              spans [n, 2] = (first, end) rows, partial, n_head, n_head_kv, head_dim,
//              scale, softcap, split)
//   Launch: grid (n * n_head, split), block 128 (4 warps), split = ceil(longest span /
//   ATTEND_CHUNK). Block (t * n_head + h, s) takes rows s·ATTEND_CHUNK.. of token t's span
//   (none if that is past its end), query head h against kv
//   head h / (n_head / n_head_kv), and writes record (t * n_head + h) * split + s of partial,
//   head_dim + 2 floats: the part's max score m, Σ exp(score - m), and Σ exp(score - m) · v
//   (not yet divided). An empty part writes m = -inf, 0, 0.
// attend_merge(partial, out [n, n_head * head_dim], n_head, head_dim, split)
//   Launch: grid n * n_head, block head_dim threads (≤ 256), one per output value.
//
// Scores are (q · k) · scale, then softcap · tanh(score / softcap) when softcap > 0.
// head_dim is a multiple of 32, at most 256. Each lane of a warp owns head_dim / 32
// consecutive dimensions (its slice of q and of the output in registers); a warp takes one
// cache row at a time, rows warp, warp + 4, ... of the part, and the four warps' running
// results meet in shared memory at the end.

#define ATTEND_WARPS 4
// Rows of one part (the launcher's `ATTENTION_CHUNK`).
#define ATTEND_CHUNK 256
#define ATTEND_MAX_DIM 256

// E consecutive f16 values from p to f32, with the widest loads the alignment allows: p is
// lane * E values into a row whose start is a multiple of 32 values (64 bytes), so E % 8 == 0
// means 16-byte aligned, E % 4 == 0 8-byte, E % 2 == 0 4-byte (cache buffers are device
// allocations, 256-byte aligned).
template <int E>
__device__ __forceinline__ void load_f16_run(const unsigned short* p, float (&v)[E]) {
    if constexpr (E % 8 == 0) {
#pragma unroll
        for (int j = 0; j < E; j += 8) {
            const uint4 u = *(const uint4*)(p + j);
            const unsigned int w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                v[j + 2 * k] = f16_to_f32((unsigned short)(w[k] & 0xffff));
                v[j + 2 * k + 1] = f16_to_f32((unsigned short)(w[k] >> 16));
            }
        }
    } else if constexpr (E % 4 == 0) {
        const uint2 u = *(const uint2*)p;
        v[0] = f16_to_f32((unsigned short)(u.x & 0xffff));
        v[1] = f16_to_f32((unsigned short)(u.x >> 16));
        v[2] = f16_to_f32((unsigned short)(u.y & 0xffff));
        v[3] = f16_to_f32((unsigned short)(u.y >> 16));
    } else if constexpr (E % 2 == 0) {
#pragma unroll
        for (int j = 0; j < E; j += 2) {
            const unsigned int u = *(const unsigned int*)(p + j);
            v[j] = f16_to_f32((unsigned short)(u & 0xffff));
            v[j + 1] = f16_to_f32((unsigned short)(u >> 16));
        }
    } else {
#pragma unroll
        for (int j = 0; j < E; ++j) v[j] = f16_to_f32(p[j]);
    }
}

// The running softmax state of one warp over the rows it has seen.
template <int E>
struct attend_state {
    float m; // largest score so far (-inf before the first row)
    float l; // Σ exp(score - m)
    float o[E]; // Σ exp(score - m) · v, this lane's dimensions
};

// One block of attend_split for head_dim = 32 E. The shared arrays are the kernel's (one set
// for every E, not one per instantiation).
template <int E>
__device__ __forceinline__ void attend_part(const float* q, const unsigned short* kc, const unsigned short* vc,
                                            const int* spans, float* partial, int n_head, int n_head_kv,
                                            float scale, float softcap, int split, float* sh_m, float* sh_l,
                                            float* sh_o) {
    constexpr int D = 32 * E;
    const int th = blockIdx.x; // t * n_head + h
    const int t = th / n_head, h = th % n_head;
    const int s = blockIdx.y;
    const int warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;

    const int first = spans[2 * t], end = spans[2 * t + 1];
    const int len = end > first ? end - first : 0;
    const int lo = first + min(s * ATTEND_CHUNK, len);
    const int hi = min(lo + ATTEND_CHUNK, end);

    const int kvh = h / (n_head / n_head_kv);
    const size_t row_stride = (size_t)n_head_kv * D;
    const size_t col = (size_t)kvh * D + lane * E;

    float qv[E];
#pragma unroll
    for (int e = 0; e < E; ++e) qv[e] = q[(size_t)th * D + lane * E + e];

    attend_state<E> st;
    st.m = NEG_INF;
    st.l = 0.0f;
#pragma unroll
    for (int e = 0; e < E; ++e) st.o[e] = 0.0f;

    // Not unrolled: with eight head sizes in one kernel, ptxas on sm_90 spilled a register of
    // the unrolled loop. Latency is hidden by the many small blocks instead.
#pragma unroll 1
    for (int r = lo + warp; r < hi; r += ATTEND_WARPS) {
        float kv[E];
        load_f16_run<E>(kc + (size_t)r * row_stride + col, kv);
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) dot += qv[e] * kv[e];
        float score = warp_reduce_sum(dot) * scale;
        if (softcap > 0.0f) score = softcap * tanhf(score / softcap);

        // exp(-inf) = 0 forgets the empty state; the new row's weight is exp(score - m).
        const float m = fmaxf(st.m, score);
        const float corr = expf(st.m - m);
        const float p = expf(score - m);
        st.l = st.l * corr + p;
        load_f16_run<E>(vc + (size_t)r * row_stride + col, kv);
#pragma unroll
        for (int e = 0; e < E; ++e) st.o[e] = st.o[e] * corr + p * kv[e];
        st.m = m;
    }

    if (lane == 0) {
        sh_m[warp] = st.m;
        sh_l[warp] = st.l;
    }
#pragma unroll
    for (int e = 0; e < E; ++e) sh_o[warp * D + lane * E + e] = st.o[e];
    __syncthreads();

    float big = NEG_INF;
#pragma unroll
    for (int w = 0; w < ATTEND_WARPS; ++w) big = fmaxf(big, sh_m[w]);
    float weight[ATTEND_WARPS];
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < ATTEND_WARPS; ++w) {
        // A warp that saw no row has m = -inf and weight 0; if none saw one, all weights are 0
        // (exp(-inf - -inf) would be NaN).
        weight[w] = big == NEG_INF ? 0.0f : expf(sh_m[w] - big);
        sum += weight[w] * sh_l[w];
    }
    float* rec = partial + ((size_t)th * split + s) * (D + 2);
    if (threadIdx.x == 0) {
        rec[0] = big;
        rec[1] = sum;
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < ATTEND_WARPS; ++w) o += weight[w] * sh_o[w * D + d];
        rec[2 + d] = o;
    }
}

extern "C" __global__ void __launch_bounds__(ATTEND_WARPS * WARP_SIZE)
    attend_split(const float* q, const unsigned short* kc, const unsigned short* vc, const int* spans,
                 float* partial, int n_head, int n_head_kv, int head_dim, float scale, float softcap, int split) {
    __shared__ float sh_m[ATTEND_WARPS], sh_l[ATTEND_WARPS];
    __shared__ float sh_o[ATTEND_WARPS * ATTEND_MAX_DIM];
#define ATTEND_CASE(E)                                                                                  \
    case E:                                                                                             \
        attend_part<E>(q, kc, vc, spans, partial, n_head, n_head_kv, scale, softcap, split, sh_m, sh_l, \
                       sh_o);                                                                           \
        break;
    switch (head_dim / WARP_SIZE) {
        ATTEND_CASE(1)
        ATTEND_CASE(2)
        ATTEND_CASE(3)
        ATTEND_CASE(4)
        ATTEND_CASE(5)
        ATTEND_CASE(6)
        ATTEND_CASE(7)
        ATTEND_CASE(8)
        default: break; // the launcher refuses other head sizes
    }
#undef ATTEND_CASE
}

extern "C" __global__ void __launch_bounds__(ATTEND_MAX_DIM)
    attend_merge(const float* partial, float* out, int n_head, int head_dim, int split) {
    const int th = blockIdx.x;
    const int d = threadIdx.x;
    if (d >= head_dim) return;
    const float* rec = partial + (size_t)th * split * (head_dim + 2);

    float big = NEG_INF;
    for (int s = 0; s < split; ++s) big = fmaxf(big, rec[(size_t)s * (head_dim + 2)]);
    float num = 0.0f, den = 0.0f;
    if (big != NEG_INF) {
        for (int s = 0; s < split; ++s) {
            const float* r = rec + (size_t)s * (head_dim + 2);
            const float w = expf(r[0] - big); // 0 for an empty part
            den += w * r[1];
            num += w * r[2 + d];
        }
    }
    // No row at all (an empty span) gives 0, not 0 / 0.
    out[(size_t)th * head_dim + d] = den > 0.0f ? num / den : 0.0f;
}
