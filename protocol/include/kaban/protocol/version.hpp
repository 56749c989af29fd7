// Versions of Kaban and of its wire protocol.
#pragma once

#include <string_view>

namespace kaban::protocol {

/// The wire protocol version; every endpoint lives under kApiPrefix.
inline constexpr int kProtocolVersion = 1;
inline constexpr std::string_view kApiPrefix = "/v1";

/// Kaban's release version ("0.1.0"), the same for agent and server builds.
std::string_view kaban_version() noexcept;

}  // namespace kaban::protocol
