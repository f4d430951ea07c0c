// The loops of generation's one-token step (model/decode_step.cpp), on plain float arrays.
//
// Everything of the step but its matrix products (those are model/systems/packed_matmul.h's):
// nothing is dispatched, allocated or recorded for autograd between the boxes. The arithmetic
// is the same as forward()'s (tests/test_model.cpp compares them); only the order of the
// additions differs.
#pragma once

#include <cstdint>

namespace dracarys::kernels {

// y = (x − mean(x)) / √(var(x) + eps) · gamma + beta, over n values (y may be x).
void layer_norm(const float* x, const float* gamma, const float* beta, double eps, float* y, int64_t n);

// x = GELU(x) = x · Φ(x), the exact (erf) form, in place.
void gelu(float* x, int64_t n);

// x = max(0, x)², in place (the ReLU² activation).
void relu2(float* x, int64_t n);

// x = x / √(mean(x²) + eps), in place (QK-norm).
void rms_normalise(float* x, int64_t n, double eps);

// logits = cap · tanh(logits / cap), in place (logit soft-capping).
void softcap(float* logits, int64_t n, float cap);

// One query's attention over one head's keys and values of `length` positions:
//   scores[t] = K[t]·q · scale,  w = softmax(scores),  out = Σ_t w[t] · V[t].
// q: [dk]; K, V: [length, dk] rows; scores: room for `length` floats (receives w); out: [dk].
void attend_one(const float* q, const float* K, const float* V, int64_t length, int64_t dk, float scale, float* scores,
                float* out);

}  // namespace dracarys::kernels
