#include "train/dist_address.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace dracarys {

namespace {

constexpr char kFix[] =
    "; name the interface that reaches the other hosts with --dist-interface NAME (or GLOO_SOCKET_IFNAME=NAME; "
    "`ip -4 addr` lists them)";

std::string dotted(const in_addr& a) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, text, sizeof text);
  return text;
}

in_addr resolve_ipv4(const std::string& host) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found)
    throw std::invalid_argument("--master-addr " + host + " does not resolve to an IPv4 address");
  const in_addr a = reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr;
  freeaddrinfo(found);
  return a;
}

// The source address the kernel would use to reach `to`: a UDP socket's connect() sends nothing
// and only picks the route.
std::string routed_source(const in_addr& to, int port) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::invalid_argument("cannot open a socket to choose the distributed address");
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(static_cast<uint16_t>(port));
  peer.sin_addr = to;
  sockaddr_in self{};
  socklen_t len = sizeof self;
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&peer), sizeof peer) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) == 0;
  ::close(fd);
  if (!ok) throw std::invalid_argument("no route from this host to --master-addr " + dotted(to) + kFix);
  return dotted(self.sin_addr);
}

}  // namespace

bool is_loopback_address(const std::string& ipv4) { return ipv4.rfind("127.", 0) == 0; }

std::string interface_address(const std::string& name, const std::string& option) {
  if (name.empty() || name.size() >= IF_NAMESIZE || if_nametoindex(name.c_str()) == 0)
    throw std::invalid_argument(option + " names no network interface of this host: '" + name +
                                "' (`ip -4 addr` lists them)");
  ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) throw std::invalid_argument("cannot list this host's network interfaces");
  std::string found;
  for (const ifaddrs* i = all; i && found.empty(); i = i->ifa_next)
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && name == i->ifa_name)
      found = dotted(reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr);
  freeifaddrs(all);
  if (found.empty()) throw std::invalid_argument(option + " names interface " + name + ", which has no IPv4 address");
  return found;
}

DistAddressChoice choose_dist_address(const std::string& master_addr, int master_port,
                                      const std::string& interface_name, const char* env_ifname) {
  const in_addr master = resolve_ipv4(master_addr);
  const bool master_local = is_loopback_address(dotted(master));
  DistAddressChoice c;
  if (!interface_name.empty()) {
    c = {interface_address(interface_name, "--dist-interface"), "--dist-interface " + interface_name};
  } else if (env_ifname && *env_ifname) {
    const std::string first = std::string(env_ifname).substr(0, std::string(env_ifname).find(','));
    c = {interface_address(first, "GLOO_SOCKET_IFNAME"), "GLOO_SOCKET_IFNAME=" + first};
  } else if (master_local) {
    c = {"127.0.0.1", "--master-addr is on loopback"};
  } else {
    c = {routed_source(master, master_port), "the route to " + dotted(master)};
  }
  if (is_loopback_address(c.address) && !master_local)
    throw std::invalid_argument("this rank would give its peers the loopback address " + c.address + " (chosen by " +
                                c.reason + ") while rank 0 is at " + master_addr + kFix);
  return c;
}

}  // namespace dracarys
