// The launchers people already run: torchrun (its own store, or rank 0's), a restart after a
// rank is killed, --resume auto, and srun on a one-node Slurm cluster; and how a rank reads the
// variables they set (train/launch_env.h).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "dist_util.h"
#include "train/launch_env.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

EnvLookup lookup_in(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

int shell(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs `cmd` in the background through sh; returns its pid.
pid_t start(const std::string& cmd) {
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

// The dracarys-train process writing `out` whose environment says RANK=rank, or 0.
pid_t rank_process(const std::string& out, int rank) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = slurp(entry.path() / "cmdline"), env = slurp(entry.path() / "environ");
    if (cmdline.find("dracarys-train") == std::string::npos || cmdline.find(out) == std::string::npos) continue;
    if (cmdline.rfind("torchrun", 0) == 0 || cmdline.find("python") != std::string::npos) continue;
    const std::string want = "RANK=" + std::to_string(rank);
    if (env.rfind(want + '\0', 0) == 0 || env.find('\0' + want + '\0') != std::string::npos) return std::stoi(pid);
  }
  return 0;
}

// The tiny model every case trains, with the launcher's thread count (the cores shared out
// among the ranks on this machine: the same for the script, torchrun and srun).
std::string run_args(const std::string& corpus_path) {
  std::string model = kModel;
  model.erase(model.find(" --threads 1"), std::string(" --threads 1").size());
  return " --corpus " + corpus_path + model + " --batch-size 4 --lr 3e-3 --dist-timeout 30";
}

std::string script_run(const TempDir& d, const std::string& args, int p, const std::string& log) {
  return std::string(DRACARYS_SOURCE_DIR) + "/scripts/train-distributed.sh --bin " + kTrain + " --nproc 2 --port " +
         std::to_string(p) + " -- " + args + " > " + d.file(log) + " 2>&1";
}

}  // namespace

TEST(LaunchEnvironment, TorchrunSlurmAndNothingAreReadAsTheirLaunchersWriteThem) {
  auto none = read_launch_environment(lookup_in({}));
  EXPECT_EQ(none.launcher, "the command line");
  EXPECT_EQ(read_launch_environment(lookup_in({{"RANK", "0"}, {"WORLD_SIZE", "2"}})).launcher, "RANK and WORLD_SIZE");
  EXPECT_EQ(none.world_size, 1);
  EXPECT_EQ(none.master_port, 29500);

  auto t = read_launch_environment(lookup_in({{"RANK", "3"},
                                              {"WORLD_SIZE", "4"},
                                              {"LOCAL_RANK", "1"},
                                              {"LOCAL_WORLD_SIZE", "2"},
                                              {"MASTER_ADDR", "10.0.0.1"},
                                              {"MASTER_PORT", "29511"},
                                              {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                              {"TORCHELASTIC_RESTART_COUNT", "2"},
                                              {"SLURM_PROCID", "0"}}));  // torchrun inside an allocation wins
  EXPECT_EQ(t.launcher, "torchrun");
  EXPECT_EQ(t.rank, 3);
  EXPECT_EQ(t.world_size, 4);
  EXPECT_EQ(t.local_world_size, 2);
  EXPECT_EQ(t.master_addr, "10.0.0.1");
  EXPECT_EQ(t.master_port, 29511);
  EXPECT_TRUE(t.agent_store);
  EXPECT_EQ(t.restart_count, 2);
  EXPECT_FALSE(
      read_launch_environment(lookup_in({{"RANK", "0"}, {"TORCHELASTIC_USE_AGENT_STORE", "False"}})).agent_store);

  auto s = read_launch_environment(lookup_in({{"SLURM_PROCID", "5"},
                                              {"SLURM_NTASKS", "8"},
                                              {"SLURM_LOCALID", "1"},
                                              {"SLURM_NODEID", "2"},
                                              {"SLURM_STEP_TASKS_PER_NODE", "2(x2),4"},
                                              {"SLURM_JOB_NODELIST", "gpu[07-09,12],cpu1"},
                                              {"MASTER_PORT", "29600"}}));
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_EQ(s.rank, 5);
  EXPECT_EQ(s.world_size, 8);
  EXPECT_EQ(s.local_world_size, 4);
  EXPECT_EQ(s.master_addr, "gpu07");
  EXPECT_EQ(s.master_port, 29600);

  EXPECT_EQ(first_slurm_host("node1"), "node1");
  EXPECT_EQ(first_slurm_host("rack[3-4]-n[1-2],x"), "rack3-n[1-2]");
  EXPECT_EQ(slurm_tasks_on_node("3", 0), 3);
  EXPECT_EQ(slurm_tasks_on_node("2(x3),1", 3), 1);

  // Values a launcher would never write are refused, naming the variable.
  const std::map<std::string, std::string> bad[] = {
      {{"RANK", "1.5"}},
      {{"WORLD_SIZE", "-2"}},
      {{"RANK", "0"}, {"MASTER_PORT", "70000"}},
      {{"RANK", "0"}, {"TORCHELASTIC_RESTART_COUNT", "x"}},
      {{"SLURM_PROCID", "0"}, {"SLURM_JOB_NODELIST", "[1-2]"}},
      {{"SLURM_PROCID", "0"}, {"SLURM_STEP_TASKS_PER_NODE", "2(x"}},
      {{"SLURM_PROCID", "0"}, {"SLURM_NODEID", "3"}, {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"}}};
  for (const auto& vars : bad) {
    try {
      read_launch_environment(lookup_in(vars));
      ADD_FAILURE() << "accepted " << vars.begin()->first;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("the environment's"), std::string::npos) << e.what();
    }
  }
}

// torchrun's static rendezvous (its agent's store, the workers its clients) and its c10d one
// (rank 0 hosts the store, as with the script) both give the script's weights bit for bit.
TEST(Launchers, TorchrunEqualsTheScriptBitForBit) {
  if (!have_tool("torchrun")) DRACARYS_SKIP_MISSING("torchrun (Debian's python3-torch)");
  TempDir d;
  const std::string args = run_args(corpus(d)) + " --max-steps 8 --eval-every 4";
  auto with_out = [&](const std::string& name) { return args + " --out " + d.file(name); };
  ASSERT_EQ(shell(script_run(d, with_out("script.pt"), port(30), "script.log")), 0) << slurp(d.file("script.log"));
  const std::string torchrun_static = kTorchrun + " --nnodes 1 --nproc_per_node 2 --master_port " +
                                      std::to_string(port(31)) + " " + kTrain + with_out("static.pt");
  ASSERT_EQ(shell(torchrun_static + " > " + d.file("static.log") + " 2>&1"), 0) << slurp(d.file("static.log"));
  const std::string torchrun_c10d =
      kTorchrun +
      " --nnodes 1 --nproc_per_node 2 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:" + std::to_string(port(32)) +
      " --rdzv_id test " + kTrain + with_out("c10d.pt");
  ASSERT_EQ(shell(torchrun_c10d + " > " + d.file("c10d.log") + " 2>&1"), 0) << slurp(d.file("c10d.log"));
  EXPECT_TRUE(same_weights(d.file("script.pt"), d.file("static.pt")));
  EXPECT_TRUE(same_weights(d.file("script.pt"), d.file("c10d.pt")));
  EXPECT_NE(slurp(d.file("static.log")).find("torchrun's own, attempt 0"), std::string::npos)
      << slurp(d.file("static.log"));
  EXPECT_EQ(slurp(d.file("c10d.log")).find("torchrun's own"), std::string::npos) << slurp(d.file("c10d.log"));
  // Threads per rank came from LOCAL_WORLD_SIZE: the cores shared out between the two ranks.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_NE(slurp(d.file("static.log")).find("BLAS threads " + std::to_string(std::max(1, cores / 2))),
            std::string::npos)
      << slurp(d.file("static.log"));
}

// --resume auto alone: a fresh run where --out holds nothing, its own checkpoint resumed, and
// another run's refused and left as it was.
TEST(Launchers, ResumeAutoStartsFreshContinuesItsOwnAndRefusesAnother) {
  TempDir d;
  const std::string args = run_args(corpus(d)) + " --eval-every 3 --resume auto --out " + d.file("run.pt");
  ASSERT_EQ(shell(kTrain + args + " --max-steps 3 2> " + d.file("a.log")), 0) << slurp(d.file("a.log"));
  EXPECT_NE(slurp(d.file("a.log")).find("holds no checkpoint yet, so this run starts fresh"), std::string::npos);
  // The same command again continues it (here with nothing left to do), with saves as often as
  // it likes: --save-every changes when a run is saved, not what it computes.
  ASSERT_EQ(shell(kTrain + args + " --max-steps 3 --save-every 2 2> " + d.file("b.log")), 0) << slurp(d.file("b.log"));
  EXPECT_NE(slurp(d.file("b.log")).find("resuming " + d.file("run.pt") + " at step 3"), std::string::npos)
      << slurp(d.file("b.log"));
  const std::string before = slurp(d.file("run.pt"));
  EXPECT_EQ(shell(kTrain + args + " --max-steps 3 --seed 7 2> " + d.file("c.log")), 1);
  const std::string refused = slurp(d.file("c.log"));
  EXPECT_NE(refused.find("holds a checkpoint of another run (--seed 1337 there, 7 here)"), std::string::npos)
      << refused;
  EXPECT_NE(refused.find("--resume " + d.file("run.pt")), std::string::npos) << refused;
  EXPECT_EQ(slurp(d.file("run.pt")), before);
  // A longer run is another command too: it says which setting differs.
  EXPECT_EQ(shell(kTrain + args + " --max-steps 6 2> " + d.file("e.log")), 1);
  EXPECT_NE(slurp(d.file("e.log")).find("--max-steps 3 there, 6 here"), std::string::npos) << slurp(d.file("e.log"));
  // Continued explicitly, it goes on; the run it continues is still the first command's.
  ASSERT_EQ(shell(kTrain + " --resume " + d.file("run.pt") + " --max-steps 6 2> " + d.file("f.log")), 0)
      << slurp(d.file("f.log"));
  ASSERT_EQ(shell(kTrain + args + " --max-steps 3 2> " + d.file("g.log")), 0) << slurp(d.file("g.log"));
  EXPECT_NE(slurp(d.file("g.log")).find("at step 6"), std::string::npos) << slurp(d.file("g.log"));
}

// A rank killed at a random moment under --max_restarts 1: torchrun restarts the group, every rank
// resumes from the newest save, and the weights equal the uninterrupted run's bit for bit.
TEST(Launchers, ARankKilledUnderTorchrunCostsOneRestartAndNotTheRun) {
  if (!have_tool("torchrun")) DRACARYS_SKIP_MISSING("torchrun (Debian's python3-torch)");
  TempDir d;
  const std::string args = run_args(corpus(d)) + " --max-steps 300 --eval-every 100 --save-every 5 --resume auto";
  ASSERT_EQ(shell(script_run(d, args + " --out " + d.file("whole.pt"), port(40), "whole.log")), 0)
      << slurp(d.file("whole.log"));
  std::mt19937 pick(std::random_device{}());
  const int victim = static_cast<int>(pick() % 2);
  const int delay_ms = 100 + static_cast<int>(pick() % 900);
  const std::string out = d.file("restarted.pt");
  const pid_t agent =
      start(kTorchrun + " --nnodes 1 --nproc_per_node 2 --max_restarts 1 --master_port " + std::to_string(port(41)) +
            " " + kTrain + args + " --out " + out + " > " + d.file("restarted.log") + " 2>&1");
  // Kill after the first save, a random moment later.
  for (int i = 0; i < 600 && !std::filesystem::exists(out); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  const pid_t target = rank_process(out, victim);
  ASSERT_GT(target, 0) << "rank " << victim << " not found; " << slurp(d.file("restarted.log"));
  ASSERT_EQ(kill(target, SIGKILL), 0);
  ASSERT_EQ(wait_exit(agent), 0) << "rank " << victim << " killed after " << delay_ms
                                 << " ms: " << slurp(d.file("restarted.log"));
  const std::string log = slurp(d.file("restarted.log"));
  EXPECT_NE(log.find("torchrun's own, attempt 1"), std::string::npos) << log;
  EXPECT_NE(log.find("resuming " + out + " at step "), std::string::npos) << log;
  EXPECT_TRUE(same_weights(d.file("whole.pt"), out)) << "rank " << victim << " killed after " << delay_ms << " ms";
}

namespace {

// A one-node Slurm cluster for one test (tests/slurm_cluster.sh): slurmctld on port(50), slurmd
// on the next; `ok` false where it cannot start.
struct SlurmCluster {
  std::string dir;
  bool ok = false;
  explicit SlurmCluster(const TempDir& d) : dir(d.file("slurm")) {
    ok = shell(std::string(DRACARYS_SOURCE_DIR) + "/tests/slurm_cluster.sh start " + dir + " " +
               std::to_string(port(50)) + " 2> " + d.file("slurm-start.log")) == 0;
  }
  ~SlurmCluster() { shell(std::string(DRACARYS_SOURCE_DIR) + "/tests/slurm_cluster.sh stop " + dir); }
};

}  // namespace

// srun -n 2 starts two ranks that find each other from Slurm's variables alone (SLURM_PROCID,
// SLURM_NTASKS, the node list's first host, MASTER_PORT), with the script's weights.
TEST(Launchers, SrunOnAOneNodeClusterEqualsTheScript) {
  TempDir d;
  SlurmCluster cluster(d);
  if (!cluster.ok)
    DRACARYS_SKIP_MISSING("a one-node Slurm cluster (root, slurm-wlm and munge: " +
                          slurp(d.file("slurm-start.log")).substr(0, 200) + ")");
  const std::string args = run_args(corpus(d)) + " --max-steps 8 --eval-every 4";
  ASSERT_EQ(shell(script_run(d, args + " --out " + d.file("script.pt"), port(53), "script.log")), 0)
      << slurp(d.file("script.log"));
  const std::string srun = "SLURM_CONF=" + cluster.dir + "/slurm.conf MASTER_PORT=" + std::to_string(port(52)) +
                           " timeout 300 srun -n 2 --kill-on-bad-exit=1 " + kTrain + args + " --out " +
                           d.file("srun.pt");
  ASSERT_EQ(shell(srun + " > " + d.file("srun.log") + " 2>&1"), 0) << slurp(d.file("srun.log"));
  EXPECT_NE(slurp(d.file("srun.log")).find("started by slurm"), std::string::npos) << slurp(d.file("srun.log"));
  EXPECT_TRUE(same_weights(d.file("script.pt"), d.file("srun.pt")));
}
