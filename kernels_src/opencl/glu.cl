/* glu.cl — out = act(gate) * up, act = SiLU or tanh-approximated GELU (common.cl is prepended).
 *
 * Element-wise over rows × inner; gate, up and out each have their own row stride (a fused
 * [.., 2*inner] projection arrives as two operands from the core). The grid is 2-D: dimension 0 walks
 * the vectors of a row (neighbouring work-items, neighbouring addresses), dimension 1 the rows, with a
 * row loop so the host can keep dimension 1 within every driver's limit.
 *   kf_glu_w8  8 elements per work-item (inner, row starts and strides multiples of 8)
 *   kf_glu_w1  one element per work-item
 */

#define KF_GLU_KERNEL_ARGS struct kf_glu_params p, const global uchar *gate, const global uchar *up, global uchar *out

/* sqrt(2/pi) of the GELU tanh approximation. */
#define KF_GELU_K 0.7978845608028654f
#define KF_GELU_C 0.044715f

#define KF_GLU_KERNEL(W, F)                                                                           \
  kernel void kf_glu_w##W(KF_GLU_KERNEL_ARGS) {                                                       \
    const uint g_dt = KF_DT_OF(p.dtypes, KF_GLU_DT_SHIFT_GATE);                                       \
    const uint u_dt = KF_DT_OF(p.dtypes, KF_GLU_DT_SHIFT_UP);                                         \
    const uint o_dt = KF_DT_OF(p.dtypes, KF_GLU_DT_SHIFT_RESULT);                                        \
    const bool gelu = (p.flags & KF_GLU_ACT_GELU_TANH) != 0;                                          \
    const long col = (long)get_global_id(0) * W;                                                      \
    if (col >= p.inner) return;                                                                       \
    for (long row = get_global_id(1); row < p.rows; row += get_global_size(1)) {                      \
      const F g = kf_load##W(gate, (long)p.gate + row * p.gate_row_stride + col, g_dt);               \
      const F u = kf_load##W(up, (long)p.up + row * p.up_row_stride + col, u_dt);                     \
      F activated;                                                                                    \
      if (gelu)                                                                                       \
        activated = 0.5f * g * (1.0f + tanh(KF_GELU_K * (g + KF_GELU_C * g * g * g)));                \
      else /* silu(g) = g / (1 + e^-g); e^-g = inf for very negative g gives -0 */                    \
        activated = g / (1.0f + exp(-g));                                                             \
      kf_store##W(out, (long)p.result + row * p.result_row_stride + col, activated * u, o_dt);              \
    }                                                                                                 \
  }

KF_GLU_KERNEL(8, float8)
KF_GLU_KERNEL(1, float)
