#include "train/launch_env.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <stdexcept>

namespace dracarys {

namespace {

constexpr int kMaxRanks = 1 << 20;  // far above any cluster; bounds what the variables may claim

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// A whole number in [lo, hi] from `name`, or `fallback` where it is unset.
int count_from(const EnvLookup& get, const char* name, int lo, int hi, int fallback) {
  const char* v = get(name);
  if (!v) return fallback;
  const std::string s = v;
  if (!all_digits(s) || std::stoi(s) < lo || std::stoi(s) > hi)
    throw std::invalid_argument(std::string("the environment's ") + name + "=\"" + s.substr(0, 20) +
                                "\" is not a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
  return std::stoi(s);
}

std::string text_from(const EnvLookup& get, const char* name) {
  const char* v = get(name);
  return v ? std::string(v) : std::string();
}

void read_torchrun(const EnvLookup& get, LaunchEnvironment& e) {
  // torchrun's agent adds its own variables; scripts/train-distributed.sh sets only the ranks'.
  e.launcher = get("TORCHELASTIC_RUN_ID") || get("TORCHELASTIC_RESTART_COUNT") ? "torchrun" : "RANK and WORLD_SIZE";
  e.world_size = count_from(get, "WORLD_SIZE", 1, kMaxRanks, 1);
  e.rank = count_from(get, "RANK", 0, kMaxRanks, 0);
  e.local_world_size = count_from(get, "LOCAL_WORLD_SIZE", 1, kMaxRanks, 1);
  e.local_rank = count_from(get, "LOCAL_RANK", 0, kMaxRanks, 0);
  e.agent_store = text_from(get, "TORCHELASTIC_USE_AGENT_STORE") == "True";  // as Python writes str(True)
  e.restart_count = count_from(get, "TORCHELASTIC_RESTART_COUNT", 0, INT_MAX - 1, 0);
  e.max_restarts = count_from(get, "TORCHELASTIC_MAX_RESTARTS", 0, INT_MAX - 1, 0);
  e.run_id = text_from(get, "TORCHELASTIC_RUN_ID");
}

void read_slurm(const EnvLookup& get, LaunchEnvironment& e) {
  e.launcher = "slurm";
  e.world_size = count_from(get, "SLURM_NTASKS", 1, kMaxRanks, 1);
  e.rank = count_from(get, "SLURM_PROCID", 0, kMaxRanks, 0);
  e.local_rank = count_from(get, "SLURM_LOCALID", 0, kMaxRanks, 0);
  const int node = count_from(get, "SLURM_NODEID", 0, kMaxRanks, 0);
  const std::string per_node = text_from(get, "SLURM_STEP_TASKS_PER_NODE");
  if (!per_node.empty()) e.local_world_size = slurm_tasks_on_node(per_node, node);
  std::string nodes = text_from(get, "SLURM_STEP_NODELIST");
  if (nodes.empty()) nodes = text_from(get, "SLURM_JOB_NODELIST");
  if (!nodes.empty() && !get("MASTER_ADDR")) e.master_addr = first_slurm_host(nodes);
}

}  // namespace

LaunchEnvironment read_launch_environment(const EnvLookup& get) {
  LaunchEnvironment e;
  if (get("RANK") || get("WORLD_SIZE"))
    read_torchrun(get, e);
  else if (get("SLURM_PROCID"))
    read_slurm(get, e);
  if (const char* a = get("MASTER_ADDR")) e.master_addr = a;
  e.master_port = count_from(get, "MASTER_PORT", 1, 65535, e.master_port);
  return e;
}

std::string first_slurm_host(const std::string& nodelist) {
  const auto bad = [&nodelist] {
    return std::invalid_argument("the environment's Slurm node list \"" + nodelist.substr(0, 40) +
                                 "\" does not start with a host name");
  };
  // The first entry: up to the first comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  const std::string entry = nodelist.substr(0, end);
  const size_t open = entry.find('[');
  if (open == std::string::npos) {
    if (entry.empty()) throw bad();
    return entry;
  }
  // prefix[first...]suffix: the first number (or range start) of the bracket, zero padding kept.
  const size_t close = entry.find(']', open);
  if (close == std::string::npos) throw bad();
  const std::string inside = entry.substr(open + 1, close - open - 1);
  const std::string first = inside.substr(0, inside.find_first_of(",-"));
  if (!all_digits(first) || open == 0) throw bad();
  return entry.substr(0, open) + first + entry.substr(close + 1);
}

int slurm_tasks_on_node(const std::string& list, int node) {
  // Entries "N" or "N(xK)" (N tasks on each of K nodes), comma-separated, in node order.
  size_t at = 0;
  int seen = 0;
  while (at < list.size()) {
    size_t end = list.find(',', at);
    if (end == std::string::npos) end = list.size();
    const std::string entry = list.substr(at, end - at);
    const size_t paren = entry.find("(x");
    const std::string tasks = entry.substr(0, paren);
    std::string times = "1";
    if (paren != std::string::npos)
      times = entry.back() == ')' ? entry.substr(paren + 2, entry.size() - paren - 3) : std::string();
    if (!all_digits(tasks) || !all_digits(times))
      throw std::invalid_argument("the environment's SLURM_STEP_TASKS_PER_NODE=\"" + list.substr(0, 40) +
                                  "\" is not a list of task counts");
    seen += std::stoi(times);
    if (node < seen) return std::max(1, std::stoi(tasks));
    at = end + 1;
  }
  throw std::invalid_argument("the environment's SLURM_STEP_TASKS_PER_NODE=\"" + list.substr(0, 40) +
                              "\" lists no tasks for node " + std::to_string(node));
}

}  // namespace dracarys
