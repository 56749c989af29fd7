// FaultProxy: a TCP relay on 127.0.0.1 that cuts connections, for fault tests. Each connection
// gets a byte budget (both directions together) from the test's policy; when it is spent, both
// sides are reset (or closed, at the policy's choice) mid-stream: mid-handshake, mid-request or
// mid-response depending on the budget. The target port can change while it runs (a restarted
// server). Loopback only; stops by itself on destruction.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace kaban::testing {

class FaultProxy {
 public:
  /// What happens to one connection: after `budget` bytes relayed it is cut; `reset` sends a TCP
  /// RST (SO_LINGER 0) rather than a FIN.
  struct Cut {
    std::uint64_t budget = std::numeric_limits<std::uint64_t>::max();
    bool reset = true;
  };
  using Policy = std::function<Cut()>;

  explicit FaultProxy(std::uint16_t target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr = loopback(0);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 64) != 0)
      throw std::runtime_error("fault proxy: cannot listen");
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~FaultProxy() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    ::close(listener_);
    std::vector<std::thread> pumps;
    {
      std::lock_guard lock(mutex_);
      pumps.swap(pumps_);
    }
    for (auto& t : pumps)
      t.join();
  }

  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::uint16_t port() const { return port_; }
  void set_target(std::uint16_t port) { target_port_ = port; }
  /// The policy for connections accepted from now on; none = relay everything.
  void set_policy(Policy policy) {
    std::lock_guard lock(mutex_);
    policy_ = std::move(policy);
  }
  std::uint64_t connections() const { return connections_; }
  std::uint64_t cuts() const { return cuts_; }

 private:
  static sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }

  void accept_loop() {
    while (!stopping_) {
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        if (stopping_)
          return;
        continue;
      }
      ++connections_;
      Cut cut;
      {
        std::lock_guard lock(mutex_);
        if (policy_)
          cut = policy_();
        pumps_.emplace_back([this, client, cut] { relay(client, cut); });
      }
    }
  }

  void relay(int client, Cut cut) {
    const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback(target_port_);
    if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      abort_socket(client, true);
      ::close(server);
      return;
    }
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    std::uint64_t relayed = 0;
    char buffer[16 * 1024];
    bool cut_now = false;
    while (!stopping_ && !cut_now) {
      if (::poll(fds, 2, 100) < 0)
        break;
      bool closed = false;
      for (int i = 0; i < 2 && !closed && !cut_now; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
          continue;
        const std::uint64_t left = cut.budget - relayed;
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(left, sizeof buffer));
        if (want == 0) {
          cut_now = true;
          break;
        }
        const ssize_t n = ::recv(fds[i].fd, buffer, want, 0);
        if (n <= 0) {
          closed = true;
          break;
        }
        if (!send_all(fds[1 - i].fd, buffer, static_cast<std::size_t>(n))) {
          closed = true;
          break;
        }
        relayed += static_cast<std::uint64_t>(n);
        cut_now = relayed >= cut.budget;
      }
      if (closed)
        break;
    }
    if (cut_now)
      ++cuts_;
    abort_socket(client, cut_now && cut.reset);
    abort_socket(server, cut_now && cut.reset);
  }

  static bool send_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
      const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }

  static void abort_socket(int fd, bool reset) {
    if (reset) {
      const linger hard{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    }
    ::close(fd);
  }

  std::atomic<std::uint16_t> target_port_;
  std::uint16_t port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<std::uint64_t> cuts_{0};
  std::mutex mutex_;
  Policy policy_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

}  // namespace kaban::testing
