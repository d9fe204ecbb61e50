// The DeepSeekMoE layer around the gate (v3-facts §3.3; model.py MoE.forward, Expert): token
// permutation into the grouped GEMM's contiguous layout, the SwiGLU experts, the weighted
// combine, the shared expert.
//
// Ops (Params::op):
//   permute  x bf16 [T, dim], indices i32 [T, k]
//            -> xp bf16 [R, dim]: each expert's rows (its tokens in ascending order) in one
//               segment, segments in expert order, each padded to a multiple of `align` rows
//               (fp8_gemm's contiguous layout, kMAlign 128); padding rows are zero;
//               group_index i32 [R]: the expert of each row, -1 on padding;
//               row_of i32 [T, k]: the row of xp that holds (token t, choice j).
//            R = sum over experts of roundup(count_e, align): empty experts take no rows.
//   combine  expert_out bf16 [R, dim], row_of i32 [T, k], weights bf16 [T, k]
//            -> y bf16 [T, dim] = sum_j weights[t, j] * expert_out[row_of[t, j]], in FP64,
//               rounded once (the inverse permutation with the weighted sum).
//   layer    x bf16 [T, dim], gate weight bf16 [E, dim] (+ bias f32 [E] when the config has
//            one), w1, w3 bf16 [E, I, dim], w2 bf16 [E, dim, I], shared ws1, ws3 bf16 [Is, dim],
//            ws2 bf16 [dim, Is] (Is = n_shared_experts * I)
//            -> y bf16 [T, dim] = sum_j g_j FFN_{e_j}(x) + FFN_shared(x), FFN(x) =
//               w2 (silu(w1 x) * w3 x); routing and its BF16 weights g from the moe_gate
//               reference (model.py returns them .type_as(x)), every product and sum after it
//               in FP64, y rounded once to BF16. model.py instead rounds each expert's output
//               and each accumulation to BF16 in ascending expert order: the spread that order
//               leaves is what a kernel's tolerance must cover.
//            NaN in x is not an error: it stays in its token. A NaN in x[t] makes t's gate
//            scores NaN (the gate routes t to the first experts of the first groups with NaN
//            weights, as torch.topk ranks NaN first) and t's shared-expert output NaN, so all of
//            y[t] is NaN; every other token is computed from its own row only, bit for bit as
//            without the NaN (MoeLayer.NanInOneTokenStaysInThatToken).
// Routing for permute/combine cases is drawn (Routing below), not computed by a gate, so that
// edge cases (empty experts, every token to the same experts) are exact.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/fill.hpp"
#include "core/tensor.hpp"
#include "reference/moe_gate.hpp"

namespace dsv3::moe {

constexpr int64_t kAlign = 128;  // fp8_gemm's kMAlign: rows per contiguous-layout block

enum class Op : uint8_t { permute, combine, layer };
enum class Draw : uint8_t { uniform, skewed, same_experts };  // drawn routings (permute, combine)
std::string_view op_name(Op o);
std::string_view draw_name(Draw d);

struct Params {
  Op op = Op::permute;
  std::string model = "deepseek-v3-671b";  // experts, top-k, dims, gate
  int64_t tokens = 1;
  int64_t dim = 0;    // 0 = the config's
  int64_t inter = 0;  // layer: expert intermediate size, 0 = the config's moe_inter_dim
  int64_t align = kAlign;
  Draw draw = Draw::uniform;
  Dist dist = Dist::normal;
  std::string to_string() const;
  moe_gate::Routing routing() const;  // the config's routing with dim overridden; validates
  int64_t inter_dim() const;
  int64_t shared_inter() const;
};

// The drawn routing of a permute/combine case: k distinct experts per token, seeded. uniform:
// any expert alike; skewed: expert e weighted 1 / (e + 1) (a few hot experts, many cold or
// empty); same_experts: every token to experts 0 .. k-1 (all the load on k experts).
std::vector<int32_t> draw_indices(const Params& p);
// Rows per expert and the padded segment starts (E + 1 entries) of a routing.
std::vector<int64_t> segment_starts(const std::vector<int32_t>& indices, int64_t experts, int64_t align);

std::vector<TensorSpec> input_specs(const Params& p);
std::vector<TensorSpec> output_specs(const Params& p);
std::vector<Tensor> make_inputs(const Params& p);
void run_reference(const Params& p, const std::vector<Tensor>& in, std::vector<Tensor>& out);

// The layer's routing as the reference computes it (the moe_gate reference on x and the gate
// weight): BF16 weights and expert indices, [T, k].
struct LayerRouting {
  std::vector<uint16_t> weights;
  std::vector<int32_t> indices;
};
LayerRouting layer_routing(const Params& p, const std::vector<Tensor>& in);

// The tolerance of moe/cublas_bf16 (optimized/moe_layer.cu), per output element: a first-order
// bound B [T, dim] (f32, the check's "magnitude:y" aid for layer cases) of that path's roundings,
// from the reference's exact FP64 intermediates (reference/moe.cpp). Per branch b (each
// routed choice with its BF16 weight g, and the shared expert with g = 1), hidden unit i and output c:
//   h1, h3 = w1 x, w3 x; S1, S3 = |w1| |x|, |w3| |x|; a = silu(h1) h3
//   da_i  = |silu'(h1)| |h3| g_d S1 + |silu(h1)| g_d S3 + (2^-8 + 8 u) |a|   FP32 GEMMs over dim
//           (g_d = 2 dim u, u = 2^-24, twice the sequential bound for any summation order), the
//           FP32 SiLU (8 u) and the BF16 rounding of a (2^-8, BF16's unit roundoff)
//   M_c   = sum_i |w2_ci| |a_i|,  D_c = sum_i |w2_ci| da_i
//   do_c  = D_c + g_I M_c + 2^-8 (M_c + D_c)                FP32 GEMM over I, BF16 rounding of o
//   B_c   = sum_b |g_b| do_c + (k + 1) u sum_b |g_b| M_c     the FP32 combine of k + 1 terms
Tensor layer_error_bound(const Params& p, const std::vector<Tensor>& in);

double flops(const Params& p);
double bytes_moved(const Params& p);

}  // namespace dsv3::moe
