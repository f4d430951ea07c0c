// The model's contract: causality, attention weights, an independent reference, the KV cache,
// parameter counting, determinism, gradients, learning, and config validation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <cmath>
#include <set>

#include "model/attention.h"
#include "model/config.h"
#include "model/dropout.h"
#include "model/generate.h"
#include "model/init.h"
#include "model/rotary.h"
#include "model/systems/cpu_threads.h"
#include "model/systems/packed_matmul.h"
#include "model/transformer.h"

using namespace dracarys;

namespace {

ModelConfig tiny(int64_t layers = 2, int64_t heads = 4, int64_t d = 32, int64_t ctx = 16, int64_t vocab = 50) {
  ModelConfig c;
  c.layers = layers;
  c.heads = heads;
  c.d_model = d;
  c.d_ff = 4 * d;
  c.context = ctx;
  c.vocab_size = vocab;
  c.dropout = 0.0;
  return c;
}

// The model's options, each alone and all together, on top of `base`: every path must support
// every one of them (model/config.h).
std::vector<ModelConfig> variants(const ModelConfig& base) {
  std::vector<ModelConfig> out;
  for (int v = 0; v < 7; ++v) {
    ModelConfig c = base;
    if (v == 1) c.positional = PositionalKind::Learned;
    if (v == 2 || v == 6) c.positional = PositionalKind::Rotary;
    if (v == 3 || v == 6) c.qk_norm = true;
    if (v == 4 || v == 6) c.activation = Activation::Relu2;
    if (v == 5 || v == 6) c.logit_softcap = 3.0;  // low enough to bend these logits
    out.push_back(c);
  }
  return out;
}

std::string describe(const ModelConfig& c) { return c.to_json(); }

Transformer make(const ModelConfig& c, uint64_t seed = 7) {
  torch::manual_seed(seed);
  Transformer m(c);
  m->eval();
  return m;
}

}  // namespace

TEST(Model, CausalityExact) {
  for (const auto& c : variants(tiny())) {
    SCOPED_TRACE(describe(c));
    auto m = make(c);
    torch::NoGradGuard ng;
    auto a = torch::randint(0, c.vocab_size, {2, 12}, torch::kLong);
    auto b = a.clone();
    const int64_t t = 5;
    b.narrow(1, t + 1, 12 - t - 1).random_(0, c.vocab_size);
    ASSERT_FALSE(torch::equal(a, b));
    auto la = m->forward(a), lb = m->forward(b);
    EXPECT_TRUE(torch::equal(la.narrow(1, 0, t + 1), lb.narrow(1, 0, t + 1)));
    EXPECT_FALSE(torch::equal(la.narrow(1, t + 1, 1), lb.narrow(1, t + 1, 1)));
  }
}

TEST(Model, AttentionWeightsRowsSumToOneAndMaskedAboveDiagonal) {
  auto c = tiny();
  auto m = make(c);
  torch::NoGradGuard ng;
  std::vector<AttentionTrace> att;
  m->forward(torch::randint(0, c.vocab_size, {3, 10}, torch::kLong), nullptr, &att);
  ASSERT_EQ(att.size(), static_cast<size_t>(c.layers));
  for (auto& trace : att) {
    const auto& w = trace.filter;
    ASSERT_EQ(w.sizes(), (std::vector<int64_t>{3, c.heads, 10, 10}));
    EXPECT_TRUE(torch::allclose(w.sum(-1), torch::ones({3, c.heads, 10}), 1e-5, 1e-6));
    auto upper = torch::ones({10, 10}, torch::kBool).triu(1);
    EXPECT_EQ(w.masked_select(upper.expand_as(w)).abs().max().item<float>(), 0.0f);
    // something below the diagonal is non-zero: the mask is not masking everything
    EXPECT_GT(w.masked_select(~upper.expand_as(w)).min().item<float>(), 0.0f);
  }
}

// The trace (model/attention_trace.h) is the reference forward's own intermediates: each box
// recomputed here from the box before it is bit-equal to the one kept, the output projection of
// the concatenation is the layer's output, asking for a trace changes no logit, and every
// filter row sums to 1. For every model option (QK-norm and rotary add their boxes).
TEST(Model, TraceHoldsEveryBoxOfTheReferenceBitForBit) {
  namespace F = torch::nn::functional;
  for (const auto& c : variants(tiny(2, 4, 32, 16, 50))) {
    SCOPED_TRACE(describe(c));
    auto m = make(c, 11);
    m->set_kernels(Kernels::kReference);
    torch::NoGradGuard ng;
    const int64_t B = 2, T = 9, H = c.heads, dk = c.head_dim();
    const auto tokens = torch::randint(0, c.vocab_size, {B, T}, torch::kLong);
    std::vector<AttentionTrace> traces;
    EXPECT_TRUE(torch::equal(m->forward(tokens, nullptr, &traces), m->forward(tokens)));
    ASSERT_EQ(traces.size(), static_cast<size_t>(c.layers));
    auto params = m->named_parameters();
    for (int64_t l = 0; l < c.layers; ++l) {
      const auto& t = traces[l];
      const std::string at = "blocks." + std::to_string(l) + ".attn.";
      auto heads = [&](const torch::Tensor& x) { return x.view({B, T, H, dk}).transpose(1, 2); };
      auto qkv = F::linear(t.input, params[at + "qkv.weight"], params[at + "qkv.bias"]).view({B, T, 3 * H * dk});
      EXPECT_TRUE(torch::equal(t.q, heads(qkv.narrow(2, 0, H * dk).contiguous())));
      EXPECT_TRUE(torch::equal(t.k, heads(qkv.narrow(2, H * dk, H * dk).contiguous())));
      EXPECT_TRUE(torch::equal(t.v, heads(qkv.narrow(2, 2 * H * dk, H * dk).contiguous())));
      EXPECT_EQ(t.q_normed.defined(), c.qk_norm);
      EXPECT_EQ(t.q_rotated.defined(), c.positional == PositionalKind::Rotary);
      auto q = t.q, k = t.k;
      if (c.qk_norm) {
        EXPECT_TRUE(torch::equal(t.q_normed, CausalSelfAttentionImpl::normalise(q)));
        EXPECT_TRUE(torch::equal(t.k_normed, CausalSelfAttentionImpl::normalise(k)));
        q = t.q_normed, k = t.k_normed;
      }
      if (t.q_rotated.defined()) {
        auto tables = rotary_tables(c.context, dk);
        auto cos = tables.cos.narrow(0, 0, T), sin = tables.sin.narrow(0, 0, T);
        EXPECT_TRUE(torch::equal(t.q_rotated, rotate(q, cos, sin)));
        EXPECT_TRUE(torch::equal(t.k_rotated, rotate(k, cos, sin)));
        q = t.q_rotated, k = t.k_rotated;
      }
      EXPECT_TRUE(torch::equal(t.scores, torch::matmul(q, k.transpose(-2, -1))));
      EXPECT_TRUE(torch::equal(t.scaled, t.scores / std::sqrt(static_cast<double>(dk))));
      auto above = torch::ones({T, T}, torch::kBool).triu(1).expand_as(t.masked);
      EXPECT_TRUE(torch::equal(t.masked.masked_select(~above), t.scaled.masked_select(~above)));
      EXPECT_TRUE(torch::all(torch::isinf(t.masked.masked_select(above))).item<bool>());
      EXPECT_TRUE(torch::equal(t.filter, torch::softmax(t.masked, -1)));
      EXPECT_TRUE(torch::allclose(t.filter.sum(-1), torch::ones({B, H, T}), 1e-5, 1e-6));
      EXPECT_TRUE(torch::equal(t.filtered, torch::matmul(t.filter, t.v)));
      EXPECT_TRUE(torch::equal(t.concat, t.filtered.transpose(1, 2).reshape({B, T, H * dk})));
      EXPECT_TRUE(torch::equal(t.output, F::linear(t.concat, params[at + "proj.weight"], params[at + "proj.bias"])));
      // The layer's own output, run again without a trace; the next block starts from this one's.
      CausalSelfAttention alone(c);
      alone->eval();
      for (auto& p : alone->named_parameters()) p.value().copy_(params[at + p.key()]);
      EXPECT_TRUE(torch::equal(t.output, alone->forward_reference(t.input, nullptr, nullptr)));
      if (l == 0) {
        EXPECT_FALSE(torch::equal(t.residual, t.input));
      }
    }
  }
}

// An independent attention written with explicit loops over heads and positions.
TEST(Model, AttentionMatchesPerHeadReference) {
  auto c = tiny(1, 4, 32, 16, 50);
  torch::manual_seed(3);
  CausalSelfAttention attn(c);
  attn->eval();
  torch::NoGradGuard ng;
  const int64_t B = 2, T = 9, H = c.heads, dk = c.head_dim(), d = c.d_model;
  auto x = torch::randn({B, T, d});
  AttentionTrace trace;
  auto y = attn->forward(x, nullptr, &trace);
  const auto& weights = trace.filter;

  auto params = attn->named_parameters();
  auto Wqkv = params["qkv.weight"], bqkv = params["qkv.bias"];
  auto Wo = params["proj.weight"], bo = params["proj.bias"];
  auto Wq = Wqkv.narrow(0, 0, d), Wk = Wqkv.narrow(0, d, d), Wv = Wqkv.narrow(0, 2 * d, d);
  auto bq = bqkv.narrow(0, 0, d), bk = bqkv.narrow(0, d, d), bv = bqkv.narrow(0, 2 * d, d);
  auto ref = torch::zeros({B, T, d});
  for (int64_t b = 0; b < B; ++b) {
    auto Q = torch::matmul(x[b], Wq.t()) + bq, K = torch::matmul(x[b], Wk.t()) + bk,
         V = torch::matmul(x[b], Wv.t()) + bv;
    std::vector<torch::Tensor> heads;
    for (int64_t h = 0; h < H; ++h) {
      auto out = torch::zeros({T, dk});
      for (int64_t t = 0; t < T; ++t) {
        auto q = Q[t].narrow(0, h * dk, dk);
        std::vector<double> s;
        for (int64_t j = 0; j <= t; ++j)
          s.push_back((q * K[j].narrow(0, h * dk, dk)).sum().item<double>() / std::sqrt(double(dk)));
        double mx = *std::max_element(s.begin(), s.end()), z = 0;
        for (auto& v : s) z += (v = std::exp(v - mx));
        for (int64_t j = 0; j <= t; ++j) {
          out[t] += (s[j] / z) * V[j].narrow(0, h * dk, dk);
          EXPECT_NEAR(weights[b][h][t][j].item<double>(), s[j] / z, 1e-5);
        }
      }
      heads.push_back(out);
    }
    ref[b] = torch::matmul(torch::cat(heads, 1), Wo.t()) + bo;
  }
  EXPECT_LT((y - ref).abs().max().item<float>(), 1e-5);
}

TEST(Model, CachedDecodingMatchesFullForward) {
  for (const auto& c : variants(tiny())) {
    SCOPED_TRACE(describe(c));
    auto m = make(c);
    torch::NoGradGuard ng;
    auto tokens = torch::randint(0, c.vocab_size, {2, c.context}, torch::kLong);
    auto full = m->forward(tokens);
    // Prefill 5 positions at once, then one position at a time.
    auto cache = m->make_cache();
    auto pre = m->forward(tokens.narrow(1, 0, 5), &cache);
    EXPECT_LT((pre - full.narrow(1, 0, 5)).abs().max().item<float>(), 1e-5);
    for (int64_t t = 5; t < c.context; ++t) {
      auto step = m->forward(tokens.narrow(1, t, 1), &cache);
      EXPECT_LT((step.squeeze(1) - full.select(1, t)).abs().max().item<float>(), 1e-4) << "position " << t;
    }
    EXPECT_EQ(cache.length(), c.context);
    EXPECT_ANY_THROW(m->forward(tokens.narrow(1, 0, 1), &cache));  // past the context
  }
}

TEST(Model, CachedGenerationEqualsUncachedGreedy) {
  auto c = tiny(2, 2, 32, 32, 40);
  auto m = make(c, 11);
  GenerateOptions o;
  o.sampling.greedy = true;
  o.max_new_tokens = 24;  // stays within the context: the two paths see the same windows
  auto a = generate(m, {1, 2, 3, 4}, o);
  o.use_cache = false;
  auto b = generate(m, {1, 2, 3, 4}, o);
  EXPECT_EQ(a, b);
  o.use_cache = true;
  m->set_kernels(Kernels::kReference);  // the one-token step is forward() with the cache
  EXPECT_EQ(generate(m, {1, 2, 3, 4}, o), a);
  {
    torch::NoGradGuard no_grad;
    KVCache stepped = m->make_cache(), forwarded = m->make_cache();
    m->forward(one_sequence({1, 2, 3}), &stepped);
    m->forward(one_sequence({1, 2, 3}), &forwarded);
    EXPECT_TRUE(torch::equal(m->decode_one(4, stepped), m->forward(one_sequence({4}), &forwarded)[0][0]));
  }
  m->set_kernels(Kernels::kFast);
  EXPECT_EQ(a.size(), 24u);
  // Past the context the cached path slides its window and keeps going.
  o.use_cache = true;
  o.max_new_tokens = 100;
  EXPECT_EQ(generate(m, {1, 2, 3}, o).size(), 100u);
}

// The two attention paths (model/attention.h) agree: the reference, box by box in
// [batch, heads, T, d_k] layout, and the fast one, heads folded into the batch. Outputs, the
// cache and every gradient, for one position and odd lengths, one to eight heads,
// one and three sequences, with and without a cache holding earlier positions.
TEST(Model, FastAttentionEqualsTheReferenceInOutputsAndGradients) {
  for (int64_t heads : {1, 2, 3, 8}) {
    for (int64_t batch : {1, 3}) {
      for (int64_t T : {1, 7, 16}) {
        for (bool cached : {false, true}) {
          // Every model option at two heads; the default model at the others.
          for (const auto& c : heads == 2 ? variants(tiny(2, heads, 8 * heads, 24, 37))
                                          : std::vector<ModelConfig>{tiny(2, heads, 8 * heads, 24, 37)}) {
            SCOPED_TRACE(describe(c));
            auto run = [&](Kernels kernels, std::vector<AttentionTrace>* attention) {
              auto m = make(c, 5);
              m->train();  // dropout is 0: training mode only keeps autograd's graph
              m->set_kernels(kernels);
              torch::manual_seed(3);
              auto tokens = torch::randint(c.vocab_size, {batch, T + 5}, torch::kLong);
              KVCache cache = m->make_cache();
              torch::Tensor out;
              if (cached) {
                torch::NoGradGuard no_grad;  // five earlier positions, as generation caches them
                m->forward(tokens.narrow(1, 0, 5), &cache);
              }
              if (cached) {
                out = m->forward(tokens.narrow(1, 5, T), &cache, attention);
              } else {
                out = m->forward(tokens.narrow(1, 0, T), nullptr, attention);
              }
              (out * out).sum().backward();
              std::vector<torch::Tensor> results = {out.detach()};
              for (auto& p : m->parameters()) results.push_back(p.grad().clone());
              return results;
            };
            std::vector<AttentionTrace> att_reference;  // (2 layers)
            const auto fast = run(Kernels::kFast, nullptr), reference = run(Kernels::kReference, &att_reference);
            // One attention module on its own, fed by random vectors: the two paths' outputs and caches.
            {
              torch::NoGradGuard no_grad;
              CausalSelfAttention attention(c);
              torch::manual_seed(4);
              const auto earlier = torch::randn({batch, 5, c.d_model}), x = torch::randn({batch, T, c.d_model});
              LayerKVCache cache_fast, cache_reference;
              if (cached) {
                attention->forward_fast(earlier, &cache_fast);
                attention->forward_reference(earlier, &cache_reference, nullptr);
              }
              const auto module_fast = attention->forward_fast(x, cached ? &cache_fast : nullptr);
              const auto module_reference =
                  attention->forward_reference(x, cached ? &cache_reference : nullptr, nullptr);
              EXPECT_TRUE(torch::allclose(module_fast, module_reference, 1e-5, 1e-6));
              if (cached) {
                EXPECT_TRUE(torch::allclose(cache_fast.keys(), cache_reference.keys(), 1e-5, 1e-6));
              }
            }
            ASSERT_EQ(fast.size(), reference.size());
            for (size_t i = 0; i < fast.size(); ++i)
              EXPECT_TRUE(torch::allclose(fast[i], reference[i], 1e-5, 1e-5))
                  << "heads " << heads << " batch " << batch << " T " << T << " cached " << cached << " tensor " << i
                  << ": max difference " << (fast[i] - reference[i]).abs().max().item<float>();
            EXPECT_EQ(att_reference.size(), 2u);
          }
        }
      }
    }
  }
}

// The fast one-token step (decode_one, matrix-vector products) against the reference
// (forward() with the cache): the same logits and the same cache contents, for one to eight
// heads, both positional encodings, tied and untied heads, from the first position to the last.
TEST(Model, DecodeOneEqualsTheReferenceForward) {
  for (int64_t heads : {1, 2, 3, 8}) {
    for (auto c : variants(tiny(2, heads, 24 * heads, 13, 41))) {
      SCOPED_TRACE(describe(c));
      c.tied_head = heads % 2 == 0;
      auto m = make(c, static_cast<uint64_t>(heads));
      torch::NoGradGuard no_grad;
      KVCache reference = m->make_cache(), fast = m->make_cache();
      // A prompt of 3 tokens through forward() fills both caches alike; then one token at a time.
      auto prompt = torch::tensor(std::vector<int64_t>{5, 7, 11}).unsqueeze(0);
      m->forward(prompt, &reference);
      m->forward(prompt, &fast);
      for (int64_t t = 3; t < c.context; ++t) {
        const int64_t token = (t * 17) % c.vocab_size;
        auto want = m->forward(torch::tensor(std::vector<int64_t>{token}).unsqueeze(0), &reference)[0][0];
        auto got = m->decode_one(token, fast);
        ASSERT_EQ(got.sizes(), want.sizes());
        EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5))
            << "heads " << heads << " position " << t << ": max difference " << (got - want).abs().max().item<float>();
        EXPECT_EQ(fast.length(), reference.length());
      }
      for (size_t l = 0; l < reference.layers.size(); ++l)
        EXPECT_TRUE(torch::allclose(fast.layers[l].k, reference.layers[l].k, 1e-5, 1e-5));
      EXPECT_THROW(m->decode_one(1, fast), c10::Error);  // the context is full
    }
  }
}

// The one-token step's products shared among helper threads give the same bits as one thread
// alone (each row's sum stays whole on one thread), for row counts that do not divide evenly.
TEST(CpuThreads, DecodeOneGivesTheSameBitsWithAnyThreadCount) {
  auto c = tiny(2, 3, 36, 20, 43);
  auto m = make(c, 9);
  torch::NoGradGuard no_grad;
  auto run = [&](int threads) {
    set_cpu_threads(threads);
    KVCache cache = m->make_cache();
    std::vector<torch::Tensor> logits;
    for (int64_t t = 0; t < c.context; ++t) logits.push_back(m->decode_one((t * 7) % c.vocab_size, cache));
    return logits;
  };
  const auto one = run(1), two = run(2), three = run(3);
  set_cpu_threads(1);
  for (size_t t = 0; t < one.size(); ++t) {
    EXPECT_TRUE(torch::equal(one[t], two[t])) << "position " << t;
    EXPECT_TRUE(torch::equal(one[t], three[t])) << "position " << t;
  }
}

// parallel_for (model/systems/cpu_threads.h) visits every index once, for ranges shorter and longer
// than the team, and a team can be replaced by another.
TEST(Model, ParallelForVisitsEveryIndexOnce) {
  for (int threads : {1, 2, 3, 4}) {
    set_cpu_threads(threads);
    EXPECT_EQ(cpu_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 5, 1000}) {
      std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
      for (int repeat = 0; repeat < 3; ++repeat)
        parallel_for(n, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) ++visits[static_cast<size_t>(i)];
        });
      for (int64_t i = 0; i < n; ++i)
        EXPECT_EQ(visits[static_cast<size_t>(i)].load(), 3) << "n " << n << " index " << i;
    }
  }
  set_cpu_threads(1);
}

TEST(Model, ParameterCountMatchesFormulaAndTiedHeadSharesStorage) {
  for (bool tied : {true, false}) {
    for (auto c : variants(tiny(3, 2, 24, 20, 37))) {
      c.tied_head = tied;
      auto m = make(c);
      int64_t n = 0, buffers = 0;
      for (auto& p : m->parameters()) n += p.numel();
      for (auto& b : m->buffers()) buffers += b.numel();
      EXPECT_EQ(n, c.parameter_count());
      EXPECT_EQ(buffers, c.buffer_count());
      auto embed = m->named_parameters()["embed.weight"];
      if (tied) {
        EXPECT_EQ(m->head_weight().data_ptr(), embed.data_ptr());
        EXPECT_EQ(m->named_parameters().find("head.weight"), nullptr);
      } else {
        EXPECT_NE(m->head_weight().data_ptr(), embed.data_ptr());
      }
    }
  }
  // Hand-counted: d=4, ff=8, V=5, T=3, 1 layer, learned, untied.
  ModelConfig c = tiny(1, 2, 4, 3, 5);
  c.d_ff = 8;
  c.positional = PositionalKind::Learned;
  c.tied_head = false;
  EXPECT_EQ(c.parameter_count(), 20 + 12 + (8 + 60 + 20 + 8 + 40 + 36) + 8 + 20);
}

TEST(Model, SameSeedSameWeightsAndOutputs) {
  auto c = tiny();
  auto a = make(c, 5), b = make(c, 5), d = make(c, 6);
  auto x = torch::randint(0, c.vocab_size, {1, 8}, torch::kLong);
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
  EXPECT_FALSE(torch::equal(a->forward(x), d->forward(x)));
}

TEST(Model, GradientsReachEveryParameter) {
  for (bool tied : {true, false}) {
    for (auto c : variants(tiny())) {
      SCOPED_TRACE(describe(c));
      c.tied_head = tied;
      auto m = make(c);
      m->train();
      auto x = torch::randint(0, c.vocab_size, {2, c.context}, torch::kLong);
      auto logits = m->forward(x);
      torch::nn::functional::cross_entropy(logits.reshape({-1, c.vocab_size}), x.reshape({-1})).backward();
      for (auto& p : m->named_parameters()) {
        ASSERT_TRUE(p.value().grad().defined()) << p.key();
        EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
      }
    }
  }
}

TEST(Model, TinyModelOverfitsOneBatch) {
  auto c = tiny(2, 2, 32, 16, 30);
  c.dropout = 0.1;
  auto m = make(c, 1);
  m->train();
  torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.0));
  auto batch = torch::randint(0, c.vocab_size, {4, c.context + 1}, torch::kLong);
  auto x = batch.narrow(1, 0, c.context), y = batch.narrow(1, 1, c.context);
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(m->forward(x).reshape({-1, c.vocab_size}), y.reshape({-1}));
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  EXPECT_NEAR(first, std::log(30.0), 0.5);
  EXPECT_LT(last, 0.2 * first);
}

TEST(Model, BadConfigsRejectedWithClearMessage) {
  auto expect_msg = [](ModelConfig c, const std::string& needle) {
    try {
      c.validate();
      ADD_FAILURE() << "accepted a bad config: " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto c = tiny();
  c.heads = 5;
  expect_msg(c, "divisible by heads");
  c = tiny();
  c.layers = 0;
  expect_msg(c, "layers must be positive");
  c = tiny();
  c.vocab_size = -3;
  expect_msg(c, "vocab_size must be positive");
  c = tiny();
  c.dropout = 1.0;
  expect_msg(c, "dropout");
  EXPECT_THROW(ModelConfig::from_json("{\"layers\": 2, \"colour\": 1}"), std::invalid_argument);
  EXPECT_THROW(ModelConfig::from_json("{\"layers\": \"two\"}"), std::invalid_argument);
  EXPECT_THROW(ModelConfig::from_json("not json"), std::invalid_argument);
  EXPECT_THROW(ModelConfig::from_json("{\"positional\": \"rotary\"}"), std::invalid_argument);
  EXPECT_THROW(Transformer{c}, std::invalid_argument);
}

TEST(Model, ConfigRoundTripsThroughJson) {
  auto c = tiny(3, 2, 24, 20, 37);
  c.dropout = 0.25;
  c.positional = PositionalKind::Learned;
  c.tied_head = false;
  auto back = ModelConfig::from_json(c.to_json());
  EXPECT_EQ(back, c);
  EXPECT_NE(back, tiny());
  for (auto v : variants(tiny())) {
    v.zero_init = true;
    EXPECT_EQ(ModelConfig::from_json(v.to_json()), v) << v.to_json();
  }
  // A config written before these options existed reads as the defaults.
  EXPECT_EQ(ModelConfig::from_json(R"({"layers": 2, "heads": 4, "d_model": 32, "d_ff": 128, "context": 16,
                                       "vocab_size": 50, "dropout": 0.0})"),
            tiny());
  EXPECT_THROW(ModelConfig::from_json(R"({"activation": "swish"})"), std::invalid_argument);
  EXPECT_THROW(ModelConfig::from_json(R"({"logit_softcap": -1})"), std::invalid_argument);
  EXPECT_THROW(ModelConfig::from_json(R"({"qk_norm": 1})"), std::invalid_argument);
  EXPECT_THROW(ModelConfig::from_json(R"({"positional": "rope", "d_model": 12, "heads": 4})"), std::invalid_argument);
}

// Rotary positions (model/rotary.h) are an explicit rotation of each pair (i, i + d_k/2) by
// the angle p·θ_i, written here as a 2×2 matrix in double precision.
TEST(Rotary, EqualsAnExplicitRotationOfEachPair) {
  const int64_t context = 40, dk = 12, half = dk / 2;
  auto tables = rotary_tables(context, dk);
  torch::manual_seed(1);
  auto x = torch::randn({3, context, dk});
  auto turned = rotate(x, tables.cos, tables.sin);
  for (int64_t p : {0, 1, 17, 39})
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * std::pow(10000.0, -2.0 * static_cast<double>(i) / dk);
      for (int64_t b = 0; b < 3; ++b) {
        const double a = x[b][p][i].item<double>(), c = x[b][p][i + half].item<double>();
        EXPECT_NEAR(turned[b][p][i].item<double>(), a * std::cos(angle) - c * std::sin(angle), 1e-5);
        EXPECT_NEAR(turned[b][p][i + half].item<double>(), a * std::sin(angle) + c * std::cos(angle), 1e-5);
      }
    }
  // The one-position form gives the same numbers.
  std::vector<float> one(x[2][17].data_ptr<float>(), x[2][17].data_ptr<float>() + dk);
  rotate_one(one.data(), tables.cos[17].data_ptr<float>(), tables.sin[17].data_ptr<float>(), dk);
  for (int64_t i = 0; i < dk; ++i) EXPECT_NEAR(one[i], turned[2][17][i].item<float>(), 1e-6);
  // A rotation keeps lengths.
  EXPECT_TRUE(torch::allclose(turned.norm(2, -1), x.norm(2, -1), 1e-5, 1e-5));
}

TEST(Rotary, AQueryKeyScoreDependsOnlyOnTheirDistance) {
  const int64_t context = 64, dk = 16;
  auto tables = rotary_tables(context, dk);
  torch::manual_seed(2);
  auto q = torch::randn({1, dk}), k = torch::randn({1, dk});
  auto score = [&](int64_t m, int64_t n) {
    auto qm = rotate(q, tables.cos.narrow(0, m, 1), tables.sin.narrow(0, m, 1));
    auto kn = rotate(k, tables.cos.narrow(0, n, 1), tables.sin.narrow(0, n, 1));
    return (qm * kn).sum().item<double>();
  };
  for (int64_t distance : {0, 1, 5, 30}) {
    const double at_start = score(distance, 0);
    for (int64_t shift : {1, 7, 33}) EXPECT_NEAR(score(distance + shift, shift), at_start, 1e-4) << distance;
  }
  EXPECT_GT(std::abs(score(5, 0) - score(6, 0)), 1e-3);  // and the distance does matter
}

// QK-norm's box gives vectors of unit RMS, so scaling the query projection changes nothing.
TEST(QkNorm, NormalisesEachVectorAndIgnoresTheQueryScale) {
  torch::manual_seed(3);
  auto x = torch::randn({2, 3, 5, 8}) * 7.0;
  auto n = CausalSelfAttentionImpl::normalise(x);
  EXPECT_TRUE(torch::allclose(n.square().mean(-1), torch::ones({2, 3, 5}), 1e-4, 1e-4));
  auto c = tiny(1, 4, 32, 16, 50);
  c.qk_norm = true;
  for (bool with_norm : {true, false}) {
    c.qk_norm = with_norm;
    torch::manual_seed(4);
    CausalSelfAttention attn(c);
    torch::NoGradGuard no_grad;
    auto input = torch::randn({2, 9, c.d_model});
    auto before = attn->forward_reference(input, nullptr, nullptr);
    auto qkv = attn->named_parameters()["qkv.weight"], bias = attn->named_parameters()["qkv.bias"];
    qkv.narrow(0, 0, c.d_model).mul_(10.0);  // the query rows
    bias.narrow(0, 0, c.d_model).mul_(10.0);
    auto after = attn->forward_reference(input, nullptr, nullptr);
    EXPECT_EQ(torch::allclose(before, after, 1e-4, 1e-5), with_norm) << "qk_norm " << with_norm;
  }
}

// ReLU²: the feed-forward computes down(max(0, up(x))²).
TEST(Activation, ReluSquaredIsWhatTheFeedForwardComputes) {
  auto c = tiny(1, 2, 16, 8, 20);
  c.activation = Activation::Relu2;
  torch::manual_seed(5);
  FeedForward ff(c);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({3, 16});
  auto p = ff->named_parameters();
  auto h = torch::matmul(x, p["up.weight"].t()) + p["up.bias"];
  auto want = torch::matmul(torch::clamp_min(h, 0) * torch::clamp_min(h, 0), p["down.weight"].t()) + p["down.bias"];
  EXPECT_TRUE(torch::allclose(ff->forward(x), want, 1e-5, 1e-5));
}

// Soft-capping bends the logits into (−cap, cap) and leaves their order alone.
TEST(Softcap, LogitsAreTheCappedLogitsOfTheSameWeights) {
  auto c = tiny();
  auto capped = c;
  capped.logit_softcap = 2.0;
  auto a = make(c, 9), b = make(capped, 9);  // same seed: same weights
  torch::NoGradGuard no_grad;
  for (auto* m : {&a, &b}) (*m)->named_parameters()["ln_final.weight"].mul_(40.0);  // so that the cap bites
  auto tokens = torch::randint(0, c.vocab_size, {2, 10}, torch::kLong);
  auto raw = a->forward(tokens), got = b->forward(tokens);
  EXPECT_TRUE(torch::allclose(got, 2.0 * torch::tanh(raw / 2.0), 1e-5, 1e-5));
  EXPECT_LT(got.abs().max().item<double>(), 2.0);
  EXPECT_GT(raw.abs().max().item<double>(), 2.0);
  EXPECT_TRUE(torch::equal(got.argmax(-1), raw.argmax(-1)));
}

// zero_init: the projections that write into the residual stream start at zero, so every
// block starts as the identity of its input, exactly.
TEST(ZeroInit, EveryBlockStartsAsTheIdentity) {
  auto c = tiny();
  c.zero_init = true;
  torch::manual_seed(6);
  DecoderBlock block(c);
  auto model = make(c, 6);
  for (auto& p : model->named_parameters()) {
    if (p.key().find("proj.weight") != std::string::npos || p.key().find("down.weight") != std::string::npos) {
      EXPECT_EQ(p.value().abs().max().item<float>(), 0.0f) << p.key();
    }
  }
  // The block is built with the model's init: re-run it as the transformer does.
  block->init_weights(0.0);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 7, c.d_model});
  EXPECT_TRUE(torch::equal(block->forward(x), x));
  // Without zero_init the same block changes its input.
  block->init_weights(init::residual_std(c.layers));
  EXPECT_FALSE(torch::equal(block->forward(x), x));
}

TEST(Sampler, TopKOneEqualsGreedyAndSeedsRepeat) {
  std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
  SamplingOptions g;
  g.greedy = true;
  EXPECT_EQ(Sampler(g).next(logits), 1);
  SamplingOptions k1;
  k1.top_k = 1;
  k1.temperature = 5.0;
  EXPECT_EQ(Sampler(k1).next(logits), 1);
  SamplingOptions s;
  s.temperature = 2.0;
  s.seed = 9;
  Sampler a(s), b(s);
  std::vector<int64_t> ra, rb;
  for (int i = 0; i < 50; ++i) ra.push_back(a.next(logits)), rb.push_back(b.next(logits));
  EXPECT_EQ(ra, rb);
  EXPECT_GT(std::set<int64_t>(ra.begin(), ra.end()).size(), 2u);
  SamplingOptions p;
  p.top_p = 0.3;  // only the top token is within the nucleus
  p.temperature = 1.0;
  Sampler sp(p);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sp.next(logits), 1);
  SamplingOptions bad;
  bad.temperature = 0;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
  bad = SamplingOptions{};
  bad.top_p = 1.5;
  EXPECT_THROW(bad.validate(), std::invalid_argument);
}

// The server's batched step: every sequence's logits equal its one-token step alone, bit for
// bit, whatever the batch's size and whatever the others hold; and the caches end up equal.
TEST(Model, DecodeBatchEqualsDecodeOneBitForBit) {
  for (const auto& c : variants(tiny(2, 2, 32, 40, 37))) {
    SCOPED_TRACE(describe(c));
    auto m = make(c, 13);
    m->eval();
    torch::NoGradGuard no_grad;
    for (int64_t B : {1, 2, 3, 5, 9}) {
      std::vector<KVCache> alone(B), together(B);
      for (int64_t b = 0; b < B; ++b) {  // prompts of different lengths
        std::vector<int64_t> prompt;
        for (int64_t t = 0; t <= b; ++t) prompt.push_back((b * 5 + t * 3) % c.vocab_size);
        alone[b] = m->make_cache(), together[b] = m->make_cache();
        m->forward(one_sequence(prompt), &alone[b]);
        m->forward(one_sequence(prompt), &together[b]);
      }
      for (int step = 0; step < 6; ++step) {
        std::vector<int64_t> tokens;
        std::vector<KVCache*> caches;
        for (int64_t b = 0; b < B; ++b)
          tokens.push_back((b * 7 + step * 11) % c.vocab_size), caches.push_back(&together[b]);
        const auto batched = m->decode_batch(tokens, caches.data());
        ASSERT_EQ(batched.size(0), B);
        for (int64_t b = 0; b < B; ++b)
          EXPECT_TRUE(torch::equal(batched[b], m->decode_one(tokens[b], alone[b]))) << "B " << B << " row " << b;
      }
      for (int64_t b = 0; b < B; ++b)
        for (size_t l = 0; l < alone[b].layers.size(); ++l)
          EXPECT_TRUE(torch::equal(alone[b].layers[l].keys(), together[b].layers[l].keys()));
    }
  }
}

// The sampler's boxes beyond temperature: the penalties on tokens seen recently (llama.cpp's
// repeat penalty, OpenAI's presence and frequency), and min-p.
TEST(Sampler, PenaltiesLookBackAndMinPKeepsTheLikely) {
  const std::vector<float> logits = {2.0f, 1.9f, 0.5f, -1.0f};
  SamplingOptions greedy;
  greedy.greedy = true;
  EXPECT_EQ(Sampler(greedy).next(logits), 0);
  auto penalised = greedy;
  penalised.repeat_penalty = 1.1;  // 2.0 / 1.1 = 1.82 < 1.9
  Sampler a(penalised);
  a.remember({0});
  EXPECT_EQ(a.next(logits), 1);
  auto far = penalised;
  far.repeat_last_n = 1;  // token 0 is two tokens back: out of sight
  Sampler b(far);
  b.remember({0, 3});
  EXPECT_EQ(b.next(logits), 0);
  auto presence = greedy;
  presence.presence_penalty = 0.2;
  Sampler p(presence);
  p.remember({0});
  EXPECT_EQ(p.next(logits), 1);
  auto frequency = greedy;
  frequency.frequency_penalty = 0.06;  // once: 1.94 > 1.9; twice: 1.88 < 1.9
  Sampler f1(frequency), f2(frequency);
  f1.remember({0});
  f2.remember({0, 0});
  EXPECT_EQ(f1.next(logits), 0);
  EXPECT_EQ(f2.next(logits), 1);
  // The sampler remembers its own picks: greedy with a strong penalty alternates.
  Sampler alternating(penalised);
  EXPECT_EQ(alternating.next(logits), 0);
  EXPECT_EQ(alternating.next(logits), 1);
  // min-p 0.95 keeps tokens 0 and 1 (e^-0.1 = 0.905 < 0.95: only token 0) at temperature 1.
  SamplingOptions hot;
  hot.temperature = 1.0;
  hot.min_p = 0.95;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    hot.seed = seed;
    EXPECT_EQ(Sampler(hot).next(logits), 0);
  }
  hot.min_p = 0.2;  // keeps 0, 1 and 2 (e^-1.5 = 0.22); never 3
  std::set<int64_t> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    hot.seed = seed;
    seen.insert(Sampler(hot).next(logits));
  }
  EXPECT_EQ(seen, (std::set<int64_t>{0, 1, 2}));
}

// The packed products (model/systems/packed_matmul.h): the register-blocked kernel gives the
// plain loop's bits for every batch size, row count (panels padded) and thread count, f32 and
// int8; and both are the product itself, within float rounding.
TEST(PackedMatmul, TilesGiveThePlainLoopsBitsForAnyBatchAndThreads) {
  torch::manual_seed(3);
  for (int64_t rows : {1, 7, 8, 13, 50, 96})
    for (int64_t cols : {1, 5, 32, 67}) {
      const auto W = torch::randn({rows, cols}), bias = torch::randn({rows});
      for (bool q8 : {false, true}) {
        const auto P =
            q8 ? kernels::pack_q8(W.data_ptr<float>(), rows, cols) : kernels::pack_f32(W.data_ptr<float>(), rows, cols);
        auto stands_for = W.clone();
        if (q8) kernels::unpack_q8(P, stands_for.data_ptr<float>());
        for (int64_t B : {1, 2, 3, 4, 5, 6, 7, 13, 32}) {
          const auto X = torch::randn({B, cols});
          auto want = torch::empty({B, rows}), got = torch::empty({B, rows});
          kernels::matmul_packed_reference(P, bias.data_ptr<float>(), X.data_ptr<float>(), want.data_ptr<float>(), B);
          for (int threads : {1, 2, 3}) {
            set_cpu_threads(threads);
            kernels::matmul_packed(P, bias.data_ptr<float>(), X.data_ptr<float>(), got.data_ptr<float>(), B);
            EXPECT_TRUE(torch::equal(got, want)) << rows << "x" << cols << " B " << B << " threads " << threads;
          }
          set_cpu_threads(1);
          const auto product = torch::addmm(bias, X, stands_for.t());
          EXPECT_TRUE(torch::allclose(want, product, 1e-4, 1e-4)) << (want - product).abs().max().item<float>();
          // A vector's outputs alone equal its row of the batch.
          auto alone = torch::empty({1, rows});
          kernels::matmul_packed(P, bias.data_ptr<float>(), X[B - 1].contiguous().data_ptr<float>(),
                                 alone.data_ptr<float>(), 1);
          EXPECT_TRUE(torch::equal(alone[0], want[B - 1]));
        }
      }
    }
}

// int8 with one scale per row: every weight within half a step (max|row| / 254) of its value.
TEST(PackedMatmul, Int8WeightsAreWithinHalfAStepOfTheirRow) {
  torch::manual_seed(5);
  auto W = torch::randn({21, 40});
  W[3].zero_();  // a row of zeros keeps its zeros (scale 0)
  const auto P = kernels::pack_q8(W.data_ptr<float>(), 21, 40);
  auto back = torch::empty_like(W);
  kernels::unpack_q8(P, back.data_ptr<float>());
  const auto half_step = std::get<0>(W.abs().max(1, true)) / 254.0f;
  EXPECT_TRUE(((back - W).abs() <= half_step * 1.0001f + 1e-12f).all().item<bool>());
  EXPECT_TRUE(torch::equal(back[3], W[3]));
  EXPECT_GT((back - W).abs().max().item<float>(), 0.0f) << "int8 changes something";
}

// --weights q8: the one-token step runs the int8 weights, forward() runs what they stand for
// (so the two agree as for f32), a batch still equals each sequence alone bit for bit, and the
// logits stay near the f32 model's.
TEST(Model, Int8WeightsDecodeAsTheirReferenceAndBatchBitForBit) {
  for (const auto& c : variants(tiny(2, 2, 32, 20, 37))) {
    SCOPED_TRACE(describe(c));
    auto f32 = make(c, 21), q8 = make(c, 21);
    f32->eval(), q8->eval();
    torch::NoGradGuard no_grad;
    q8->set_weight_format(WeightFormat::kQ8);
    KVCache reference = q8->make_cache(), alone = q8->make_cache(), exact = f32->make_cache();
    for (int64_t t = 0; t < 12; ++t) {
      const int64_t token = (t * 5 + 3) % c.vocab_size;
      const auto want = q8->forward(one_sequence({token}), &reference)[0][0];
      const auto got = q8->decode_one(token, alone);
      EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-4)) << (got - want).abs().max().item<float>();
      EXPECT_LT((got - f32->decode_one(token, exact)).abs().max().item<float>(), 0.1f);
    }
    std::vector<KVCache> batch(3, q8->make_cache()), single(3, q8->make_cache());
    for (int step = 0; step < 4; ++step) {
      std::vector<int64_t> tokens = {1, 9, static_cast<int64_t>(step)};
      std::vector<KVCache*> caches = {&batch[0], &batch[1], &batch[2]};
      const auto together = q8->decode_batch(tokens, caches.data());
      for (int b = 0; b < 3; ++b) EXPECT_TRUE(torch::equal(together[b], q8->decode_one(tokens[b], single[b])));
    }
  }
}

// The packed weights follow the model's: after an optimizer-like change in place, the one-token
// step runs the new weights (training samples between its steps).
TEST(Model, DecodeStepRepacksWeightsThatChanged) {
  auto c = tiny(1, 2, 16, 8, 23);
  auto m = make(c, 4);
  m->eval();
  torch::NoGradGuard no_grad;
  KVCache before = m->make_cache();
  const auto old_logits = m->decode_one(3, before);
  for (auto& p : m->parameters()) p.mul_(1.5);
  KVCache fast = m->make_cache(), reference = m->make_cache();
  const auto got = m->decode_one(3, fast), want = m->forward(one_sequence({3}), &reference)[0][0];
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(got, old_logits, 1e-3, 1e-3));
}

// Dropout works while training and is off whenever the model is read: in evaluation mode its
// outputs are those of the same weights without dropout, and generation (which sets that mode
// itself) writes what the dropout-free model writes.
TEST(Dropout, OffInEvaluationAndGeneration) {
  for (const auto& base : variants(tiny(2, 2, 32, 32, 40))) {
    auto with = base, without = base;
    with.dropout = 0.5;
    auto m = make(with, 5), plain = make(without, 5);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : plain->named_parameters()) p.value().copy_(m->named_parameters()[p.key()]);
    }
    auto x = torch::randint(0, base.vocab_size, {2, base.context}, torch::kLong);
    m->train();
    EXPECT_FALSE(torch::equal(m->forward(x), m->forward(x))) << describe(base) << ": dropout drew no masks";
    m->eval();
    EXPECT_TRUE(torch::equal(m->forward(x), plain->forward(x))) << describe(base);
    GenerateOptions o;
    o.max_new_tokens = 20;
    o.sampling.seed = 3;
    m->train();
    EXPECT_EQ(generate(m, {1, 2, 3}, o), generate(plain, {1, 2, 3}, o)) << describe(base);
    EXPECT_FALSE(m->is_training());
  }
}

// The hashed mask (model/dropout.h): every element is what its one-element definition says, in
// the forward pass and in the gradient; about p of them are dropped; another seed is another
// mask; the team's threads share the work without changing a bit.
TEST(Dropout, TheHashedMaskIsItsDefinitionElementByElement) {
  set_cpu_threads(2);
  const double p = 0.1;
  auto x = torch::randn({3, 70000}).requires_grad_();
  auto y = hashed_dropout(x, p, 12345);
  y.sum().backward();
  const auto xs = x.detach().contiguous(), ys = y.detach().contiguous(), gs = x.grad().contiguous();
  const float* xv = xs.data_ptr<float>();
  const float* yv = ys.data_ptr<float>();
  const float* gv = gs.data_ptr<float>();
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  int64_t dropped = 0, wrong = 0;
  for (int64_t i = 0; i < xs.numel(); ++i) {
    const bool keep = kept_by_dropout(12345, i, p);
    dropped += keep ? 0 : 1;
    wrong += yv[i] != (keep ? xv[i] * scale : 0.0f) || gv[i] != (keep ? scale : 0.0f);
  }
  EXPECT_EQ(wrong, 0);
  const double n = static_cast<double>(xs.numel()), sd = std::sqrt(n * p * (1 - p));
  EXPECT_NEAR(static_cast<double>(dropped), n * p, 6 * sd);
  EXPECT_FALSE(torch::equal(hashed_dropout(x.detach(), p, 12346), ys));
  // A view that is not contiguous is masked by its elements' order.
  auto t = x.detach().t();
  EXPECT_TRUE(torch::equal(hashed_dropout(t, p, 7), hashed_dropout(t.contiguous(), p, 7)));
}
