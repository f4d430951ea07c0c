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

#include "dist_util.h"

using namespace dracarys;
using namespace dracarys::testing;

namespace {

// The reference every multi-rank case equals: one process with the whole batch of 8, into one.pt.
int train_alone(const TempDir& d, const std::string& common) {
  return std::system((kTrain + common + " --batch-size 8 --out " + d.file("one.pt") + " > /dev/null 2>&1").c_str());
}

}  // namespace

TEST(Distributed, TwoRanksEqualOneProcessWithTwiceTheBatch) {
  TempDir d;
  auto c = corpus(d);
  const std::string common = " --corpus " + c + kModel + " --max-steps 8 --eval-every 8 --lr 3e-3";
  ASSERT_EQ(train_alone(d, common), 0);
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

TEST(Distributed, TwoHostsJoinOverARealLinkAndEqualOneProcess) {
  TwoHosts hosts;
  if (!hosts.ok) DRACARYS_SKIP_MISSING("root with `ip` (iproute2), for network namespaces,");
  TempDir d;
  auto c = corpus(d);
  const std::string common = " --corpus " + c + kModel + " --max-steps 8 --eval-every 8 --lr 3e-3 --dist-timeout 30";
  ASSERT_EQ(train_alone(d, common), 0);
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

// torchrun on each "host", one node each (--nnodes 2 --node_rank), its static rendezvous: node 0's
// agent hosts the store the workers join as clients.
TEST(Distributed, TorchrunStartsOneNodePerHostAndTheyEqualOneProcess) {
  if (!have_tool("torchrun")) DRACARYS_SKIP_MISSING("torchrun (Debian's python3-torch)");
  TwoHosts hosts;
  if (!hosts.ok) DRACARYS_SKIP_MISSING("root with `ip` (iproute2), for network namespaces,");
  TempDir d;
  auto c = corpus(d);
  const std::string common = " --corpus " + c + kModel + " --max-steps 8 --eval-every 8 --lr 3e-3 --dist-timeout 30";
  ASSERT_EQ(train_alone(d, common), 0);
  const std::string node = kTorchrun + " --nnodes 2 --nproc_per_node 1 --master_addr " + hosts.addr_a +
                           " --master_port " + std::to_string(port(20)) + " --node_rank ";
  const std::string train = " " + kTrain + common + " --batch-size 4 --out " + d.file("two.pt");
  auto in_host = [&](const std::string& ns, int rank) {
    pid_t pid = fork();
    if (pid == 0) {
      const std::string cmd = "exec ip netns exec " + ns + " " + node + std::to_string(rank) + train + " > " +
                              d.file("node" + std::to_string(rank) + ".log") + " 2>&1";
      execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
      _exit(127);
    }
    return pid;
  };
  auto n0 = in_host(hosts.a, 0), n1 = in_host(hosts.b, 1);
  ASSERT_EQ(wait_exit(n0), 0) << slurp(d.file("node0.log"));
  ASSERT_EQ(wait_exit(n1), 0) << slurp(d.file("node1.log"));
  const std::string log = slurp(d.file("node0.log"));
  EXPECT_NE(log.find("started by torchrun"), std::string::npos) << log;
  EXPECT_NE(log.find("torchrun's own, attempt 0"), std::string::npos) << log;
  EXPECT_NE(log.find("chosen by the route to " + hosts.addr_a), std::string::npos) << log;
  auto one = weights(d.file("one.pt")), two = weights(d.file("two.pt"));
  for (auto& [name, t] : one) EXPECT_TRUE(torch::allclose(t, two[name], 1e-5, 1e-5)) << name;
}

namespace {

// A listener on 127.0.0.1 that answers every read with `reply` (or echoes it back, or closes
// the connection), as a program that is not a c10d store might. Its port is `port`.
class WrongPeer {
 public:
  enum Mode { kReply, kEcho, kClose };
  WrongPeer(Mode mode, std::string reply) : mode_(mode), reply_(std::move(reply)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 16);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::thread(answer, mode_, reply_, c).detach();  // by value: it may outlive this object
      }
    });
  }
  ~WrongPeer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port = 0;

 private:
  static void answer(Mode mode, std::string reply, int c) {
    char buf[4096];
    ssize_t n = 0;
    while (mode != kClose && (n = recv(c, buf, sizeof buf, 0)) > 0) {
      if (mode == kEcho) send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
      if (mode == kReply) send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
    close(c);
  }
  Mode mode_;
  std::string reply_;
  int fd_ = -1;
  std::thread thread_;
};

}  // namespace

// A port held by something that is not a c10d store: every answer ends in one line of ours and
// exit code 1, never an abort, a raw library message or glog's lines before it.
TEST(Distributed, APortThatIsNotAStoreEndsInOneLineOfOurs) {
  TempDir d;
  auto c = corpus(d);
  std::string huge_length(64, '\0');
  huge_length[7] = 0x40;  // a length field of 2^62
  std::string garbage;
  for (int i = 0; i < 1024; ++i) garbage += static_cast<char>(i % 256);
  const std::pair<WrongPeer::Mode, std::string> peers[] = {
      {WrongPeer::kReply, huge_length}, {WrongPeer::kReply, garbage}, {WrongPeer::kEcho, ""}, {WrongPeer::kClose, ""}};
  for (const auto& [mode, reply] : peers) {
    WrongPeer peer(mode, reply);
    auto r = start_rank(d, 1, 2, peer.port, " --corpus " + c + kModel + " --max-steps 2 --dist-timeout 5");
    EXPECT_EQ(wait_exit(r), 1) << "mode " << mode;
    const std::string err = slurp(d.file("rank1.err"));
    EXPECT_NE(err.find("could not join the process group"), std::string::npos) << err;
    for (const char* raw : {"bad_alloc", "enforce fail", "unordered_map", "Logging before", "socket.cpp", "terminate"})
      EXPECT_EQ(err.find(raw), std::string::npos) << raw << " in: " << err;
  }
}
