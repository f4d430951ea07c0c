// Where a rank learns who it is: the environment a launcher sets.
//
//   torchrun (and scripts/train-distributed.sh)   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
//                                                  MASTER_ADDR, MASTER_PORT,
//                                                  TORCHELASTIC_USE_AGENT_STORE, _RESTART_COUNT, _RUN_ID
//   srun (Slurm), where RANK is absent             SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
//                                                  SLURM_NODEID, SLURM_STEP_TASKS_PER_NODE,
//                                                  the first host of SLURM_STEP_NODELIST (or
//                                                  SLURM_JOB_NODELIST), MASTER_PORT
// The command line's --rank, --world-size, --master-addr and --master-port override these.
#pragma once

#include <functional>
#include <string>

namespace dracarys {

struct LaunchEnvironment {
  // Who set the variables, for the log: "torchrun", "RANK and WORLD_SIZE" (another launcher, such
  // as scripts/train-distributed.sh), "slurm", or "the command line" (none of them).
  std::string launcher = "the command line";
  int world_size = 1, rank = 0;
  int local_world_size = 1, local_rank = 0;  // ranks on this machine, and this one's place among them
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // torchrun's agent hosts the rendezvous store: every rank joins it as a client, under the
  // prefix of this attempt (TORCHELASTIC_USE_AGENT_STORE=True, torchrun's static rendezvous).
  bool agent_store = false;
  int restart_count = 0;  // restarts of the group so far (TORCHELASTIC_RESTART_COUNT)
  int max_restarts = 0;   // TORCHELASTIC_MAX_RESTARTS
  std::string run_id;     // TORCHELASTIC_RUN_ID ("none" unless --rdzv_id was given)
};

// Reads the launcher's variables through `get` (std::getenv in the program, a map in tests).
// Throws std::invalid_argument, naming the variable, for a value that is not what it must be
// (a rank that is not a whole number, a node list with no host).
using EnvLookup = std::function<const char*(const char*)>;
LaunchEnvironment read_launch_environment(const EnvLookup& get);

// The first host of a Slurm node list: "node[03-05,9],gpu1" -> "node03".
std::string first_slurm_host(const std::string& nodelist);

// Tasks on node `node` (SLURM_NODEID) from Slurm's tasks-per-node list: "2(x3),1" is 2 on
// nodes 0-2 and 1 on node 3.
int slurm_tasks_on_node(const std::string& list, int node);

}  // namespace dracarys
