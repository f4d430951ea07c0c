// Data-parallel training on 127.0.0.1: equivalence with one process, checkpoints across world
// sizes, and failing cleanly when a rank dies, never connects, or was started differently.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "test_util.h"

using namespace dracarys;
using dracarys::testing::kTrain;
using dracarys::testing::slurp;
using dracarys::testing::TempDir;

namespace {

using Clock = std::chrono::steady_clock;

// A port per test process, away from the usual 29500, so parallel tests do not collide.
int port(int offset) { return 20000 + static_cast<int>(getpid() % 20000) + offset; }

std::string corpus(const TempDir& d) {
  std::string text;
  const char* lines[] = {"cersei lannister: When you play the game of thrones, you win or you die.",
                         "ned stark: The snows will come early this year.", "hodor: Hodor.",
                         "arya stark: The sharp end goes toward the enemy.",
                         "tyrion lannister: Our family settles every account."};
  for (int i = 0; i < 60; ++i) text += std::string(lines[(i * 3) % 5]) + " " + std::to_string(i) + "\n";
  return d.write("c.txt", text);
}

const std::string kModel =
    " --layers 2 --heads 2 --d-model 32 --d-ff 64 --context 32 --vocab-size 300 --dropout 0 --val-share 0 --threads 1";

// Starts one rank in the background; its stderr goes to a file.
pid_t start_rank(const TempDir& d, int rank, int world, int p, const std::string& args) {
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

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::map<std::string, torch::Tensor> weights(const std::string& path) {
  auto m = load_model(load_checkpoint(path), torch::kCPU);
  std::map<std::string, torch::Tensor> w;
  for (auto& p : m->named_parameters()) w[p.key()] = p.value().clone();
  return w;
}

}  // namespace

TEST(Distributed, TwoRanksEqualOneProcessWithTwiceTheBatch) {
  TempDir d;
  auto c = corpus(d);
  const std::string common = " --corpus " + c + kModel + " --max-steps 8 --eval-every 8 --lr 3e-3";
  ASSERT_EQ(std::system((kTrain + common + " --batch-size 8 --out " + d.file("one.pt") + " > /dev/null 2>&1").c_str()),
            0);
  const int p = port(0);
  auto r0 = start_rank(d, 0, 2, p, common + " --batch-size 4 --out " + d.file("two.pt"));
  auto r1 = start_rank(d, 1, 2, p, common + " --batch-size 4 --out " + d.file("two.pt"));
  ASSERT_EQ(wait_exit(r0), 0) << slurp(d.file("rank0.err"));
  ASSERT_EQ(wait_exit(r1), 0) << slurp(d.file("rank1.err"));
  auto a = weights(d.file("one.pt")), b = weights(d.file("two.pt"));
  for (auto& [name, t] : a) EXPECT_TRUE(torch::allclose(t, b[name], 1e-5, 1e-5)) << name;
  EXPECT_NE(slurp(d.file("rank0.err")).find("effective batch: 4 sequences per rank x 2 ranks = 8"), std::string::npos);
  EXPECT_EQ(slurp(d.file("rank1.err")).find("info"), std::string::npos);  // only rank 0 reports

  // The 2-rank checkpoint resumes in one process.
  const std::string resume =
      kTrain + " --resume " + d.file("two.pt") + " --max-steps 12 --threads 1 > /dev/null 2> " + d.file("resume.err");
  ASSERT_EQ(std::system(resume.c_str()), 0) << slurp(d.file("resume.err"));
  EXPECT_EQ(nlohmann::json::parse(load_checkpoint(d.file("two.pt")).meta_json)["state"]["step"], 12);
}

TEST(Distributed, KilledRankStopsTheOtherWithinTheTimeout) {
  TempDir d;
  auto c = corpus(d);
  const int p = port(1);
  const std::string args = " --corpus " + c + kModel +
                           " --max-steps 100000000 --eval-every 1000000 --dist-timeout 10 --out " + d.file("k.pt");
  auto r0 = start_rank(d, 0, 2, p, args);
  auto r1 = start_rank(d, 1, 2, p, args);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  kill(r1, SIGKILL);
  wait_exit(r1);
  const auto t0 = Clock::now();
  const int code = wait_exit(r0);
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_NE(code, 0);
  EXPECT_LT(code, 128) << "rank 0 crashed instead of failing cleanly";
  EXPECT_LT(waited, 15.0);
  EXPECT_NE(slurp(d.file("rank0.err")).find("all-reduce failed"), std::string::npos) << slurp(d.file("rank0.err"));
}

TEST(Distributed, MismatchedConfigAndMissingPeerAreClearErrors) {
  TempDir d;
  auto c = corpus(d);
  const int p = port(2);
  const std::string args = " --corpus " + c + kModel + " --max-steps 5 --dist-timeout 10 --out " + d.file("m.pt");
  auto r0 = start_rank(d, 0, 2, p, args);
  auto r1 = start_rank(d, 1, 2, p, args + " --lr 0.5");
  EXPECT_NE(wait_exit(r0), 0);
  EXPECT_NE(wait_exit(r1), 0);
  EXPECT_NE((slurp(d.file("rank0.err")) + slurp(d.file("rank1.err"))).find("different config"), std::string::npos)
      << slurp(d.file("rank0.err")) << slurp(d.file("rank1.err"));

  // Rank 1 alone: rank 0's store never appears.
  const auto t0 = Clock::now();
  auto lone = start_rank(d, 1, 2, port(3), " --corpus " + c + kModel + " --max-steps 5 --dist-timeout 3");
  EXPECT_EQ(wait_exit(lone), 1);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0);
  EXPECT_NE(slurp(d.file("rank1.err")).find("could not join"), std::string::npos) << slurp(d.file("rank1.err"));
}

TEST(Distributed, SilentMasterPortAndBadValuesAreBounded) {
  TempDir d;
  auto c = corpus(d);
  // A port that accepts connections (the kernel's backlog) but never answers the handshake.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const auto t0 = Clock::now();
  auto rank1 = start_rank(d, 1, 2, ntohs(addr.sin_port), " --corpus " + c + kModel + " --max-steps 5 --dist-timeout 2");
  EXPECT_EQ(wait_exit(rank1), 1);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 15.0);
  EXPECT_NE(slurp(d.file("rank1.err")).find("could not join"), std::string::npos) << slurp(d.file("rank1.err"));
  close(listener);

  for (const std::string bad : {" --dist-timeout nan", " --dist-timeout -1", " --dist-timeout inf"}) {
    auto r = start_rank(d, 1, 2, port(5), " --corpus " + c + kModel + " --max-steps 5" + bad);
    EXPECT_EQ(wait_exit(r), 1) << bad;
    EXPECT_NE(slurp(d.file("rank1.err")).find("--dist-timeout must be a number in (0, 86400]"), std::string::npos)
        << slurp(d.file("rank1.err"));
  }
}

namespace {

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
pid_t start_rank_in(const TempDir& d, const std::string& ns, int rank, const std::string& master, int p,
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

}  // namespace

TEST(Distributed, TwoHostsJoinOverARealLinkAndEqualOneProcess) {
  TwoHosts hosts;
  if (!hosts.ok) DRACARYS_SKIP_MISSING("root with `ip` (iproute2), for network namespaces,");
  TempDir d;
  auto c = corpus(d);
  const std::string common = " --corpus " + c + kModel + " --max-steps 8 --eval-every 8 --lr 3e-3 --dist-timeout 30";
  ASSERT_EQ(std::system((kTrain + common + " --batch-size 8 --out " + d.file("one.pt") + " > /dev/null 2>&1").c_str()),
            0);
  const auto one = weights(d.file("one.pt"));
  // Three ways to name the link: the automatic choice (the route to rank 0), the option, and
  // PyTorch's environment variable; then the all-reduce after the backward pass instead of
  // behind it, which must give the same weights bit for bit.
  const std::pair<std::string, std::string> ways[] = {
      {"", ""},
      {"", " --dist-interface " + hosts.link_b},
      {"GLOO_SOCKET_IFNAME=" + hosts.link_a, ""},
      {"", " --no-overlap"},
  };
  int n = 0;
  for (const auto& [env, option] : ways) {
    const int p = port(10 + n++);
    const std::string out = d.file("two" + std::to_string(n) + ".pt");
    const std::string for_both = option == " --no-overlap" ? option : "";
    auto r0 = start_rank_in(d, hosts.a, 0, hosts.addr_a, p, env, common + for_both + " --batch-size 4 --out " + out);
    auto r1 = start_rank_in(d, hosts.b, 1, hosts.addr_a, p, "", common + option + " --batch-size 4 --out " + out);
    ASSERT_EQ(wait_exit(r0), 0) << env << option << ": " << slurp(d.file("rank0.err"));
    ASSERT_EQ(wait_exit(r1), 0) << env << option << ": " << slurp(d.file("rank1.err"));
    auto two = weights(out);
    for (auto& [name, t] : one) EXPECT_TRUE(torch::allclose(t, two[name], 1e-5, 1e-5)) << name;
  }
  const auto overlapped = weights(d.file("two1.pt")), after = weights(d.file("two4.pt"));
  for (auto& [name, t] : overlapped) EXPECT_TRUE(torch::equal(t, after.at(name))) << name;
  // A rank told to use loopback while rank 0 is on another host fails at once, naming the fix.
  const auto t0 = Clock::now();
  auto r1 = start_rank_in(d, hosts.b, 1, hosts.addr_a, port(19), "", common + " --dist-interface lo --out x.pt");
  EXPECT_EQ(wait_exit(r1), 1);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(20));
  const std::string err = slurp(d.file("rank1.err"));
  EXPECT_NE(err.find("loopback address 127.0.0.1"), std::string::npos) << err;
  EXPECT_NE(err.find("--dist-interface NAME"), std::string::npos) << err;
}
