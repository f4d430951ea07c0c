// Resume is exact: "N steps, then --resume to M" leaves the same weights, optimizer state and
// logged losses as M uninterrupted steps, bit for bit (torch::equal, ==), never to a tolerance.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/probe_file.h"
#include "cli_util.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

// Everything a continued run must reproduce: parameters, AdamW's moments and step counts, and
// the training loss logged at each evaluation.
struct RunState {
  std::map<std::string, torch::Tensor> weights;
  std::vector<torch::Tensor> optimizer;   // per parameter: exp_avg, exp_avg_sq, and the step as a tensor
  std::map<int64_t, double> logged_loss;  // step -> train_loss in the metrics file
  std::string adamw_bytes, muon_bytes;    // the optimizer's sections as stored
};

RunState read_metrics(const std::string& path, RunState& s) {
  std::ifstream metrics(path + ".metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    auto j = nlohmann::json::parse(line);
    s.logged_loss[j["step"].get<int64_t>()] = j["train_loss"].get<double>();
  }
  return s;
}

RunState read_state(const std::string& path) {
  RunState s;
  auto ckpt = load_checkpoint(path);
  auto model = load_model(ckpt, torch::kCPU);
  for (auto& p : model->named_parameters()) s.weights[p.key()] = p.value().detach().clone();
  s.adamw_bytes = ckpt.optimizer;
  s.muon_bytes = ckpt.muon;
  if (!ckpt.muon.empty()) return read_metrics(path, s);  // AdamW then holds other groups: the bytes are compared
  // The optimizer's archive is keyed by parameter order in its two groups (decayed 2-D weights,
  // then the rest), as train/step.cpp builds it.
  std::vector<torch::Tensor> decay, rest;
  for (auto& p : model->parameters()) (p.dim() >= 2 ? decay : rest).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay);
  groups.emplace_back(rest);
  torch::optim::AdamW opt(std::move(groups), torch::optim::AdamWOptions(1e-3));
  load_optimizer_bytes(opt, ckpt.optimizer);
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      auto& st =
          static_cast<torch::optim::AdamWParamState&>(*opt.state().at(c10::guts::to_string(p.unsafeGetTensorImpl())));
      s.optimizer.push_back(st.exp_avg().clone());
      s.optimizer.push_back(st.exp_avg_sq().clone());
      s.optimizer.push_back(torch::tensor(st.step(), torch::kLong));
    }
  return read_metrics(path, s);
}

void expect_identical(const RunState& a, const RunState& b, const std::string& what) {
  ASSERT_EQ(a.weights.size(), b.weights.size()) << what;
  for (const auto& [name, t] : a.weights) {
    const auto& u = b.weights.at(name);
    EXPECT_TRUE(torch::equal(t, u)) << what << ": " << name << " differs by up to "
                                    << (t - u).abs().max().item<double>();
  }
  ASSERT_EQ(a.optimizer.size(), b.optimizer.size()) << what;
  for (size_t i = 0; i < a.optimizer.size(); ++i)
    EXPECT_TRUE(torch::equal(a.optimizer[i], b.optimizer[i])) << what << ": optimizer state " << i << " differs";
  EXPECT_TRUE(a.adamw_bytes == b.adamw_bytes) << what << ": AdamW's stored state differs";
  EXPECT_TRUE(a.muon_bytes == b.muon_bytes) << what << ": Muon's stored state differs";
  // Steps logged by both runs (a split run also logs the step it stopped at).
  int compared = 0;
  for (const auto& [step, loss] : a.logged_loss)
    if (b.logged_loss.count(step)) {
      EXPECT_EQ(loss, b.logged_loss.at(step)) << what << ": logged loss at step " << step;
      ++compared;
    }
  EXPECT_GE(compared, 1) << what;
}

}  // namespace

TEST(Resume, SplitRunsEqualTheUninterruptedRunBitForBit) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  // Dropout on, so the masks must be reproduced too; no validation text, so evaluation only
  // logs the loss and samples; one BLAS thread, which the resumed run must keep on its own.
  const std::string common =
      " --corpus " + corpus + kTiny + kVocab + " --schedule-steps 30 --eval-every 10 --val-share 0 --dropout 0.1";
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 30 --out " + d.file("full.pt")).code, 0);
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 30 --out " + d.file("again.pt")).code, 0);
  const auto full = read_state(d.file("full.pt"));
  expect_identical(full, read_state(d.file("again.pt")), "two uninterrupted runs");
  EXPECT_EQ(full.logged_loss.size(), 3u);

  for (int split : {1, 15, 29}) {
    const std::string part = d.file("part" + std::to_string(split) + ".pt");
    ASSERT_EQ(run(d, kTrain + common + " --max-steps " + std::to_string(split) + " --out " + part).code, 0);
    // --resume alone: every setting, thread counts included, comes from the checkpoint.
    auto r = run(d, kTrain + " --resume " + part + " --max-steps 30");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("BLAS threads 1 "), std::string::npos) << r.err;
    expect_identical(full, read_state(part), std::to_string(split) + " steps, then resumed to 30");
  }
}

TEST(Resume, GradientAccumulationResumesBitForBitAndMatchesTheLargerBatch) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string shape = " --layers 2 --heads 2 --d-model 64 --d-ff 128 --context 64 --threads 1 --lr 3e-3";
  const std::string common =
      " --corpus " + corpus + shape + kVocab + " --schedule-steps 12 --eval-every 6 --val-share 0 --dropout 0.1";
  const std::string accum = common + " --batch-size 4 --grad-accum 2";
  ASSERT_EQ(run(d, kTrain + accum + " --max-steps 12 --out " + d.file("full.pt")).code, 0);
  const auto full = read_state(d.file("full.pt"));
  // Stopped after 5 of 12 steps, then resumed: the same micro-batches, masks and sums.
  ASSERT_EQ(run(d, kTrain + accum + " --max-steps 5 --out " + d.file("part.pt")).code, 0);
  auto r = run(d, kTrain + " --resume " + d.file("part.pt") + " --max-steps 12");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("4 sequences x 2 micro-batches per rank x 1 rank(s) = 8"), std::string::npos) << r.err;
  expect_identical(full, read_state(d.file("part.pt")), "5 accumulated steps, then resumed to 12");
  // Two micro-batches of 4 are the batch of 8 (the same windows), up to the order of the sums.
  const std::string plain = " --corpus " + corpus + shape + kVocab + " --schedule-steps 12 --val-share 0 --dropout 0";
  ASSERT_EQ(run(d, kTrain + plain + " --batch-size 8 --max-steps 12 --out " + d.file("b8.pt")).code, 0);
  ASSERT_EQ(run(d, kTrain + plain + " --batch-size 4 --grad-accum 2 --max-steps 12 --out " + d.file("b4x2.pt")).code,
            0);
  const auto b8 = read_state(d.file("b8.pt")), b4x2 = read_state(d.file("b4x2.pt"));
  for (const auto& [name, w] : b8.weights) EXPECT_TRUE(torch::allclose(w, b4x2.weights.at(name), 1e-4, 1e-5)) << name;
}

// The learning-speed options (Muon, rotary positions, QK-norm, ReLU², soft-capped logits, zero
// initial projections, the wsd schedule) resume bit for bit too; the optimizer and the model's
// options cannot change on --resume.
TEST(Resume, MuonAndTheNewModelOptionsResumeBitForBit) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string common = " --corpus " + corpus + kTiny + kVocab +
                             " --schedule-steps 12 --eval-every 6 --val-share 0 --dropout 0.1 --optimizer muon "
                             "--positions rope --qk-norm --activation relu2 --logit-softcap 30 --zero-init "
                             "--schedule wsd --cooldown 0.5 --muon-weight-decay 0.5 --muon-ns-steps 4";
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 12 --out " + d.file("full.pt")).code, 0);
  const auto full = read_state(d.file("full.pt"));
  EXPECT_FALSE(full.muon_bytes.empty());
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 5 --out " + d.file("part.pt")).code, 0);
  auto r = run(d, kTrain + " --resume " + d.file("part.pt") + " --max-steps 12");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_identical(full, read_state(d.file("part.pt")), "5 Muon steps, then resumed to 12");
  for (const std::string change : {" --optimizer adamw", " --positions sinusoidal", " --activation gelu"}) {
    auto refused = run(d, kTrain + " --resume " + d.file("part.pt") + " --max-steps 14" + change);
    EXPECT_NE(refused.code, 0) << change;
    EXPECT_NE(refused.err.find("--resume"), std::string::npos) << change << ": " << refused.err;
  }
}

// --dropout-from-epoch: until that many passes over the training tokens, the run is the run
// without dropout, bit for bit; from then on the masks are drawn, and a resume across the
// switch is exact.
TEST(Resume, DropoutFromAnEpochIsNoDropoutUntilThenAndResumesAcrossTheSwitch) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string common = " --corpus " + corpus + kTiny + kVocab + " --schedule-steps 12 --val-share 0";
  auto weights_equal = [](const RunState& a, const RunState& b) {
    for (const auto& [name, w] : a.weights)
      if (!torch::equal(w, b.weights.at(name))) return false;
    return true;
  };
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 12 --dropout 0 --out " + d.file("none.pt")).code, 0);
  ASSERT_EQ(
      run(d, kTrain + common + " --max-steps 12 --dropout 0.1 --dropout-from-epoch 1e5 --out " + d.file("never.pt"))
          .code,
      0);
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 12 --dropout 0.1 --out " + d.file("always.pt")).code, 0);
  const auto none = read_state(d.file("none.pt"));
  EXPECT_TRUE(weights_equal(none, read_state(d.file("never.pt"))));
  EXPECT_FALSE(weights_equal(none, read_state(d.file("always.pt"))));
  // The tiny corpus passes in a few steps: switch at the pass step 6 reaches, resume from 4.
  const std::string late = common + " --dropout 0.1 --dropout-from-epoch 0.3";
  ASSERT_EQ(run(d, kTrain + late + " --max-steps 12 --out " + d.file("late.pt")).code, 0);
  ASSERT_EQ(run(d, kTrain + late + " --max-steps 4 --out " + d.file("late4.pt")).code, 0);
  auto r = run(d, kTrain + " --resume " + d.file("late4.pt") + " --max-steps 12");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto late_full = read_state(d.file("late.pt"));
  expect_identical(late_full, read_state(d.file("late4.pt")), "dropout from a pass, resumed across the switch");
  EXPECT_FALSE(weights_equal(none, late_full));
  EXPECT_FALSE(weights_equal(read_state(d.file("always.pt")), late_full));
}

// The probe (dracarys-train --probe, checkpoint/probe_file.h): recorded from step 0 at every
// evaluation and every --probe-every steps; a run split and resumed records every step of the uninterrupted run, with
// the same filters bit for bit, none repeated; a file that is ahead of its checkpoint (a crash between the two writes)
// is cut back to the checkpoint's step; a damaged one is refused in one line and left as it was; a file at OUT.probe
// that is not ours is never replaced.
TEST(Resume, ProbeIsRecordedAtEachEvaluationAndResumedExactly) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string common =
      " --corpus " + corpus + kTiny + kVocab + " --schedule-steps 30 --eval-every 10 --val-share 0";
  auto steps_of = [](const ProbeRecord& r) {
    std::vector<int64_t> steps;
    for (const auto& s : r.snapshots) steps.push_back(s.step);
    return steps;
  };
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 30 --out " + d.file("full.pt")).code, 0);
  const auto full = read_probe_file(probe_path(d.file("full.pt")));
  EXPECT_EQ(steps_of(full), (std::vector<int64_t>{0, 10, 20, 30}));
  EXPECT_EQ(full.text, kPrompt);
  EXPECT_EQ(full.layers, 2);
  EXPECT_EQ(full.heads, 2);
  EXPECT_LE(std::filesystem::file_size(probe_path(d.file("full.pt"))), kMaxProbeFileBytes);
  EXPECT_FALSE(full.snapshots.front().filters == full.snapshots.back().filters) << "training changed no filter";
  // Between evaluations every --probe-every steps (default 10, here with the evaluations); the
  // last step, recorded by both, once. 0: at evaluations only.
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 25 --probe-every 5 --out " + d.file("often.pt")).code, 0);
  EXPECT_EQ(steps_of(read_probe_file(probe_path(d.file("often.pt")))), (std::vector<int64_t>{0, 5, 10, 15, 20, 25}));
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 25 --probe-every 0 --out " + d.file("evals.pt")).code, 0);
  EXPECT_EQ(steps_of(read_probe_file(probe_path(d.file("evals.pt")))), (std::vector<int64_t>{0, 10, 20, 25}));

  auto expect_same_steps = [&](const ProbeRecord& r, const std::vector<int64_t>& steps, const std::string& what) {
    ASSERT_EQ(steps_of(r), steps) << what;
    for (const auto& s : r.snapshots)
      for (const auto& f : full.snapshots)
        if (f.step == s.step) {
          EXPECT_TRUE(f.filters == s.filters) << what << ": step " << s.step;
        }
  };
  // Split at 15 (whose last evaluation records 15 too), then resumed to 30.
  const std::string part = d.file("part.pt");
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 15 --out " + part).code, 0);
  const std::string part_probe = slurp(probe_path(part)), part_checkpoint = slurp(part);
  auto r = run(d, kTrain + " --resume " + part + " --max-steps 30");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_same_steps(read_probe_file(probe_path(part)), {0, 10, 15, 20, 30}, "split at 15");

  // A probe file ahead of its checkpoint: what is past step 15 is dropped and recorded again.
  const std::string ahead = d.file("ahead.pt");
  d.write("ahead.pt", part_checkpoint);
  std::filesystem::copy_file(probe_path(d.file("full.pt")), probe_path(ahead));
  r = run(d, kTrain + " --resume " + ahead + " --max-steps 30");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_same_steps(read_probe_file(probe_path(ahead)), {0, 10, 20, 30}, "a file ahead of its checkpoint");

  // Damaged: refused before training, and neither file is touched.
  const std::string damaged = d.file("damaged.pt");
  d.write("damaged.pt", part_checkpoint);
  d.write("damaged.pt.probe", part_probe.substr(0, part_probe.size() - 3));
  r = run(d, kTrain + " --resume " + damaged + " --max-steps 30");
  expect_one_line_error(r, "probe file");
  EXPECT_EQ(slurp(damaged + ".probe"), part_probe.substr(0, part_probe.size() - 3));
  EXPECT_TRUE(slurp(damaged) == part_checkpoint);

  // Not ours: a user's file where the probe would go.
  d.write("mine.pt.probe", "my notes\n");
  r = run(d, kTrain + common + " --max-steps 10 --out " + d.file("mine.pt"));
  expect_one_line_error(r, "probe file");
  EXPECT_EQ(slurp(d.file("mine.pt.probe")), "my notes\n");
  // --probe "" records none.
  ASSERT_EQ(run(d, kTrain + common + " --max-steps 10 --probe '' --out " + d.file("none.pt")).code, 0);
  EXPECT_FALSE(std::filesystem::exists(probe_path(d.file("none.pt"))));
}

// The best checkpoint (NAME.best.pt) gets the probe's record up to its own step beside it, so
// the page and --probe-strip work on it as on NAME.pt.
TEST(Resume, TheBestCheckpointKeepsItsProbeBesideIt) {
  TempDir d;
  auto corpus = tiny_corpus(d);
  const std::string out = d.file("b.pt"), best = d.file("b.best.pt");
  ASSERT_EQ(
      run(d, kTrain + " --corpus " + corpus + kTiny + kVocab + " --max-steps 20 --eval-every 5 --out " + out).code, 0);
  ASSERT_TRUE(std::filesystem::exists(best));
  const auto record = read_probe_file(probe_path(best));
  const int64_t best_step = nlohmann::json::parse(load_checkpoint(best).meta_json)["state"]["step"];
  ASSERT_FALSE(record.snapshots.empty());
  EXPECT_EQ(record.snapshots.back().step, best_step);
  const auto r = run(d, kInfer + " -c " + best + " --probe-strip " + d.file("strip.svg"));
  EXPECT_EQ(r.code, 0) << r.err;
}
