// Helpers for the integration tests that run the real server and agent library together:
// the fast key derivation, the clocks, and a client that speaks as an enrolled device.
#pragma once

#include <chrono>
#include <cstdint>

#include <gtest/gtest.h>

#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/crypto/scrypt.hpp"
#include "kaban/server/database.hpp"

namespace kaban::testing {

/// Cheap scrypt parameters for test stores (the real ones take a fifth of a second).
inline constexpr crypto::ScryptParams kFastKdf{1u << 10, 8, 1};

/// Now, as the server stores times.
inline server::UnixTime server_now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

/// Now, in Unix seconds, as the agent's APIs take times.
inline std::int64_t unix_now() {
  return server_now().time_since_epoch().count();
}

/// A bare client with the device certificate of the enrolled `store`, for requests the agent
/// itself would not make (a blocked device asking for a chunk, a non-member's GET).
inline agent::HttpsClient device_client(agent::Store& store) {
  auto identity = agent::load_identity(store);
  EXPECT_TRUE(identity) << identity.error().message();
  agent::HttpsClientConfig config;
  config.host = identity.value().server_host;
  config.port = identity.value().server_port;
  crypto::TlsClientTrust trust;
  trust.ca_pem = identity.value().ca_pem;
  crypto::TlsClientIdentity me{
      identity.value().certificate_pem,
      crypto::SecretKey::from_bytes(identity.value().private_key_pem.bytes())};
  return agent::HttpsClient(std::move(config), std::move(trust), std::move(me));
}

}  // namespace kaban::testing
