// Mirrors: the content mirrors IT registered with `admin mirror add` (docs/content.md). A content
// mirror is an HTTPS cache (nginx) that devices fetch course chunks from by hash; it forwards
// what it lacks to this server with a client certificate of its own, known here by its
// fingerprint. A mirror may fetch chunks of live courses and nothing else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/result.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// Longest mirror name.
inline constexpr std::size_t kMaxMirrorName = 32;

/// A mirror name: 1 to kMaxMirrorName of [a-z0-9-], starting with a letter or digit. It names
/// the mirror's nginx cache and upstream too, so it stays this plain.
bool is_valid_mirror_name(std::string_view name);

/// One registered mirror.
struct Mirror {
  std::int64_t id = 0;
  std::string name;
  std::string url;                 ///< "https://HOST:PORT", as check-ins name it
  std::string client_fingerprint;  ///< hex SHA-256 of its client certificate's DER
  UnixTime created_at;
  std::optional<UnixTime> removed_at;  ///< set once `admin mirror remove` removed it

  bool removed() const { return removed_at.has_value(); }
};

/// The mirrors over one database connection. Not thread-safe: one per connection, used by the
/// connection's thread. Every method fails with errc::storage_failed if SQLite fails.
class Mirrors {
 public:
  explicit Mirrors(SQLite::Database& db) : db_(db) {}

  /// Records a mirror in use (inside the caller's transaction, if one is open); its id. Fails
  /// with errc::mirror_exists if a mirror in use already has the name or any mirror has the
  /// fingerprint, errc::invalid_mirror for a name is_valid_mirror_name() refuses.
  Result<std::int64_t> add(std::string_view name, std::string_view url,
                           std::string_view client_fingerprint, UnixTime now);
  /// Every mirror, in use first then removed, each oldest first.
  Result<std::vector<Mirror>> list();
  /// Marks the mirror in use named `name` removed at `now`; std::nullopt if no mirror in use has
  /// that name, else the mirror as it was before.
  Result<std::optional<Mirror>> remove(std::string_view name, UnixTime now);
  /// The mirror (in use or removed) whose client certificate has `fingerprint`, or std::nullopt.
  Result<std::optional<Mirror>> find_by_certificate(std::string_view fingerprint);
  /// The URLs of the mirrors in use, oldest first, at most `limit`: what a check-in names.
  Result<std::vector<std::string>> urls(std::size_t limit);

 private:
  SQLite::Database& db_;
};

}  // namespace kaban::server
