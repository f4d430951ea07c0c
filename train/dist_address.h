// Which local address a rank gives its peers for the all-reduce (Gloo's device).
//
// LibTorch's default resolves the machine's hostname, which a stock Debian host maps to a
// loopback address (127.0.1.1, or 127.0.0.1): a peer on another host is then told to connect to
// itself. So the choice here, in order:
//   1. --dist-interface NAME        that interface's IPv4 address
//   2. GLOO_SOCKET_IFNAME=NAME      the same, as PyTorch reads it (the first of a comma list)
//   3. --master-addr on loopback    127.0.0.1 (every rank on this machine)
//   4. otherwise                    the local address the kernel routes to --master-addr from
// A loopback address for a master that is not on loopback is refused with the fix in the message.
#pragma once

#include <string>

namespace dracarys {

struct DistAddressChoice {
  std::string address;  // IPv4, dotted
  std::string reason;   // how it was chosen, for the log: "interface veth0", "route to 10.0.0.1"
};

// `interface_name`: --dist-interface (may be empty); `env_ifname`: GLOO_SOCKET_IFNAME or null.
// Throws std::invalid_argument with a one-line reason.
DistAddressChoice choose_dist_address(const std::string& master_addr, int master_port,
                                      const std::string& interface_name, const char* env_ifname);

// The interface's first IPv4 address; throws std::invalid_argument naming the option when the
// interface does not exist or has none.
std::string interface_address(const std::string& name, const std::string& option);

bool is_loopback_address(const std::string& ipv4);

}  // namespace dracarys
