// CountingProxy: a TCP relay on 127.0.0.1 that counts the bytes it carries in each direction,
// so a benchmark can say what a sync or an rsync put on the wire (TCP payload: TLS records,
// HTTP and everything else the programs send; not the TCP/IP headers). Each connection is
// relayed with non-blocking sockets and a buffer per direction, so a peer that sends and
// receives at once (rsync pipelines both ways) never deadlocks the relay; a half-close (FIN) is
// passed on as one. The target port can change between runs. Loopback only.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "failure.hpp"

namespace kaban::bench {

class CountingProxy {
 public:
  /// Bytes relayed since the last reset().
  struct Counts {
    std::uint64_t to_target = 0;    ///< from the connecting side to the target
    std::uint64_t from_target = 0;  ///< from the target back
    std::uint64_t connections = 0;  ///< connections accepted
    std::uint64_t total() const { return to_target + from_target; }
  };

  /// Listens on 127.0.0.1 on a free port and relays each connection to 127.0.0.1:target_port
  /// (0: set_target() before the first connection). Throws BenchError if it cannot listen.
  explicit CountingProxy(std::uint16_t target_port = 0) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback(0);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 64) != 0) {
      const std::string why = std::strerror(errno);
      if (listener_ >= 0)
        ::close(listener_);
      throw BenchError("the counting proxy cannot listen on 127.0.0.1: " + why);
    }
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  /// Stops accepting, cuts the connections still open and joins every thread.
  ~CountingProxy() {
    stopping_ = true;
    acceptor_.join();
    ::close(listener_);
    std::vector<std::thread> relays;
    {
      std::lock_guard lock(mutex_);
      relays.swap(relays_);
    }
    for (auto& t : relays)
      t.join();
  }

  CountingProxy(const CountingProxy&) = delete;
  CountingProxy& operator=(const CountingProxy&) = delete;

  /// The port it listens on.
  std::uint16_t port() const noexcept { return port_; }
  /// Where connections accepted from now on go. Any thread.
  void set_target(std::uint16_t port) noexcept { target_port_ = port; }

  /// The counts since the last reset(). Any thread; exact once wait_idle() returned true.
  Counts counts() const noexcept {
    return {to_target_.load(), from_target_.load(), connections_.load()};
  }
  /// Starts counting from zero. Call while no connection is open (after wait_idle()).
  void reset() noexcept {
    to_target_ = 0;
    from_target_ = 0;
    connections_ = 0;
  }
  /// Connections being relayed now.
  std::uint64_t active() const noexcept { return active_.load(); }
  /// Waits until no connection is open (both sides of each closed) or `limit` passed; true if
  /// idle. Every byte of a finished connection is counted by then.
  bool wait_idle(std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (active_.load() != 0) {
      if (std::chrono::steady_clock::now() >= deadline)
        return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

 private:
  static constexpr std::size_t kBufferSize = 64 * 1024;
  static constexpr int kPollMs = 200;  // how soon a relay notices the proxy stopping

  static sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }

  void accept_loop() {
    while (!stopping_) {
      pollfd p{listener_, POLLIN, 0};
      if (::poll(&p, 1, kPollMs) <= 0)
        continue;
      const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0)
        continue;
      ++connections_;
      ++active_;
      std::lock_guard lock(mutex_);
      relays_.emplace_back([this, client] {
        relay(client);
        --active_;
      });
    }
  }

  // One direction of a connection: bytes read from `from` waiting to be written to `to`.
  struct Direction {
    int from = -1;
    int to = -1;
    std::atomic<std::uint64_t>* counter = nullptr;
    std::array<char, kBufferSize> buffer{};
    std::size_t begin = 0;
    std::size_t end = 0;
    bool eof = false;   // `from` sent FIN
    bool shut = false;  // and it was passed on to `to`
    bool pending() const { return begin < end; }
  };

  void relay(int client) {
    const int target = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = loopback(target_port_.load());
    if (target < 0 || ::connect(target, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (target >= 0)
        ::close(target);
      ::close(client);
      return;
    }
    for (int fd : {client, target})
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    auto up = std::make_unique<Direction>();
    auto down = std::make_unique<Direction>();
    up->from = client;
    up->to = target;
    up->counter = &to_target_;
    down->from = target;
    down->to = client;
    down->counter = &from_target_;
    bool failed = false;
    while (!stopping_ && !failed && !(up->shut && down->shut)) {
      // Read a side only when its direction's buffer is empty; write when it holds bytes.
      auto events_of = [](const Direction& reading, const Direction& writing) {
        short events = 0;
        if (!reading.eof && !reading.pending())
          events |= POLLIN;
        if (writing.pending())
          events |= POLLOUT;
        return events;
      };
      pollfd fds[2] = {{client, events_of(*up, *down), 0}, {target, events_of(*down, *up), 0}};
      if (::poll(fds, 2, kPollMs) < 0) {
        if (errno == EINTR)
          continue;
        break;
      }
      for (Direction* d : {up.get(), down.get()}) {
        const pollfd& in = d->from == client ? fds[0] : fds[1];
        const pollfd& out = d->to == client ? fds[0] : fds[1];
        if (!d->eof && !d->pending() && (in.revents & (POLLIN | POLLHUP | POLLERR)))
          failed = failed || !fill(*d);
        if (d->pending() && (out.revents & (POLLOUT | POLLERR)))
          failed = failed || !drain(*d);
        if (d->eof && !d->pending() && !d->shut) {
          ::shutdown(d->to, SHUT_WR);
          d->shut = true;
        }
      }
    }
    ::close(client);
    ::close(target);
  }

  // Reads what `from` has; false on a connection error.
  static bool fill(Direction& d) {
    const ssize_t n = ::recv(d.from, d.buffer.data(), d.buffer.size(), 0);
    if (n > 0) {
      d.begin = 0;
      d.end = static_cast<std::size_t>(n);
      *d.counter += static_cast<std::uint64_t>(n);
      return true;
    }
    if (n == 0) {
      d.eof = true;
      return true;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }

  // Writes what the buffer holds to `to`, as far as it takes it; false on a connection error.
  static bool drain(Direction& d) {
    const ssize_t n = ::send(d.to, d.buffer.data() + d.begin, d.end - d.begin, MSG_NOSIGNAL);
    if (n >= 0) {
      d.begin += static_cast<std::size_t>(n);
      return true;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }

  std::atomic<std::uint16_t> target_port_;
  std::uint16_t port_ = 0;
  int listener_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> to_target_{0};
  std::atomic<std::uint64_t> from_target_{0};
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<std::uint64_t> active_{0};
  std::mutex mutex_;
  std::vector<std::thread> relays_;
  std::thread acceptor_;
};

}  // namespace kaban::bench
