// Ports on 127.0.0.1 for baseline servers that cannot listen on port 0 and say which port they
// got (nginx, the rsync daemon): a port the kernel just handed out and released, and a wait
// until the server accepts connections on it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "failure.hpp"
#include "subprocess.hpp"

namespace kaban::bench {

/// A port that was free on 127.0.0.1 a moment ago (bound to port 0, read back, released).
/// Another program may take it before the caller's server binds it; callers start the server
/// again on a new port when it fails to bind. Throws BenchError.
inline std::uint16_t pick_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0)
      ::close(fd);
    throw BenchError("cannot find a free port on 127.0.0.1: " + why);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// True if something accepts TCP connections on 127.0.0.1:port now.
inline bool accepts_connections(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

/// Waits until `server` accepts connections on 127.0.0.1:port. False if it exited first (the
/// port may have been taken: the caller may try another); throws BenchError, quoting the end of
/// `log`, if it still runs but does not listen within `limit`.
inline bool wait_until_listening(Subprocess& server, std::uint16_t port,
                                 std::chrono::milliseconds limit,
                                 const std::filesystem::path& log) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (!server.running())
      return false;
    if (accepts_connections(port))
      return true;
    if (std::chrono::steady_clock::now() >= deadline) {
      throw BenchError(
          server.name() + " did not listen on 127.0.0.1:" + std::to_string(port) + " within " +
          std::to_string(std::chrono::duration_cast<std::chrono::seconds>(limit).count()) +
          " s; the end of " + log.string() + ":\n" + tail_of(log));
    }
    StopSignals::throw_if_stopped();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace kaban::bench
