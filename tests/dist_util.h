// What the distributed and launcher tests share: a corpus and a tiny model, ports, ranks started
// in the background, their weights, and two "hosts" made of network namespaces.
#pragma once

#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>

#include "checkpoint/checkpoint.h"
#include "test_util.h"

namespace dracarys::testing {

using Clock = std::chrono::steady_clock;

// A port per test process, away from the usual 29500, so parallel tests do not collide.
inline int port(int offset) { return 20000 + static_cast<int>(getpid() % 20000) + offset; }

inline std::string corpus(const TempDir& d) {
  std::string text;
  const char* lines[] = {"cersei lannister: When you play the game of thrones, you win or you die.",
                         "ned stark: The snows will come early this year.", "hodor: Hodor.",
                         "arya stark: The sharp end goes toward the enemy.",
                         "tyrion lannister: Our family settles every account."};
  for (int i = 0; i < 60; ++i) text += std::string(lines[(i * 3) % 5]) + " " + std::to_string(i) + "\n";
  return d.write("c.txt", text);
}

inline const std::string kModel =
    " --layers 2 --heads 2 --d-model 32 --d-ff 64 --context 32 --vocab-size 300 --dropout 0 --val-share 0 --threads 1";

// Starts one rank in the background; its stderr goes to a file.
inline pid_t start_rank(const TempDir& d, int rank, int world, int p, const std::string& args) {
  pid_t pid = fork();
  if (pid == 0) {
    const std::string cmd = "WORLD_SIZE=" + std::to_string(world) + " RANK=" + std::to_string(rank) +
                            " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(p) + " exec " + kTrain + args +
                            " > /dev/null 2> " + d.file("rank" + std::to_string(rank) + ".err");
    execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::map<std::string, torch::Tensor> weights(const std::string& path) {
  auto m = load_model(load_checkpoint(path), torch::kCPU);
  std::map<std::string, torch::Tensor> w;
  for (auto& p : m->named_parameters()) w[p.key()] = p.value().clone();
  return w;
}

// Whether `tool` is on the PATH.
inline bool have_tool(const std::string& tool) {
  return std::system(("command -v " + tool + " > /dev/null 2>&1").c_str()) == 0;
}

// torchrun as Debian 12 ships it (PyTorch 1.13.1 on Python 3.11) needs --redirects and --tee
// spelled out: their default, 0, fails to parse there. 2 writes each rank's stderr to its log
// and to torchrun's own stderr.
inline const std::string kTorchrun = "torchrun --no_python --redirects 2 --tee 2";

// Whether two checkpoints hold the same weights, bit for bit.
inline bool same_weights(const std::string& a, const std::string& b) {
  const auto wa = weights(a), wb = weights(b);
  if (wa.size() != wb.size()) return false;
  for (const auto& [name, t] : wa)
    if (!wb.count(name) || !torch::equal(t, wb.at(name))) return false;
  return true;
}

// Two "hosts" on this machine: network namespaces A and B joined by a veth pair, 10.231.N.1 and
// 10.231.N.2, both under the machine's one hostname (which /etc/hosts maps to a loopback
// address, as on a stock host). Needs root and `ip`; `ok` is false where they cannot be made.
struct TwoHosts {
  std::string a, b, link_a, link_b, addr_a, addr_b;
  bool ok = false;
  TwoHosts() {
    const std::string id = std::to_string(getpid() % 100000), net = std::to_string(getpid() % 250);
    a = "drc" + id + "a", b = "drc" + id + "b", link_a = "drc" + id + "A", link_b = "drc" + id + "B";
    addr_a = "10.231." + net + ".1", addr_b = "10.231." + net + ".2";
    if (geteuid() != 0) return;
    const std::string cmds[] = {
        "ip netns add " + a,
        "ip netns add " + b,
        "ip link add " + link_a + " type veth peer name " + link_b,
        "ip link set " + link_a + " netns " + a,
        "ip link set " + link_b + " netns " + b,
        "ip -n " + a + " addr add " + addr_a + "/24 dev " + link_a,
        "ip -n " + b + " addr add " + addr_b + "/24 dev " + link_b,
        "ip -n " + a + " link set " + link_a + " up",
        "ip -n " + b + " link set " + link_b + " up",
        "ip -n " + a + " link set lo up",
        "ip -n " + b + " link set lo up",
    };
    for (const auto& c : cmds)
      if (std::system((c + " > /dev/null 2>&1").c_str()) != 0) return;
    ok = true;
  }
  ~TwoHosts() {
    std::system(("ip netns del " + a + " > /dev/null 2>&1; ip netns del " + b + " > /dev/null 2>&1").c_str());
  }
};

// Starts one rank inside a namespace, with `env` (VAR=value ...) before the program.
inline pid_t start_rank_in(const TempDir& d, const std::string& ns, int rank, const std::string& master, int p,
                           const std::string& env, const std::string& args) {
  pid_t pid = fork();
  if (pid == 0) {
    const std::string cmd = "exec ip netns exec " + ns + " env WORLD_SIZE=2 RANK=" + std::to_string(rank) +
                            " MASTER_ADDR=" + master + " MASTER_PORT=" + std::to_string(p) + " " + env + " " + kTrain +
                            args + " > /dev/null 2> " + d.file("rank" + std::to_string(rank) + ".err");
    execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

}  // namespace dracarys::testing
