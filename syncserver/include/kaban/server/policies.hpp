// Policies: the device policy files IT sets, for everyone ("default") or for a group, and the
// effective policy a user's devices are under (docs/policy.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kaban/protocol/policy.hpp"
#include "kaban/result.hpp"
#include "kaban/server/database.hpp"

namespace SQLite {
class Database;
}

namespace kaban::server {

/// The audience of the policy that applies to everyone.
inline constexpr std::string_view kDefaultPolicyAudience = "default";

struct AssignedPolicy {
  std::string audience;  ///< "default" or a group id
  protocol::PolicyFile file;
  std::int64_t revision = 0;  ///< the policy version when it was set
  UnixTime set_at;
};

/// A user's effective policy and where it came from.
struct EffectivePolicy {
  protocol::Policy policy;
  std::int64_t version = 0;          ///< the 'policy' counter now (see DevicePolicy::version)
  std::vector<std::string> sources;  ///< audiences whose files took part, "default" first
};

/// Policies over one database connection. Not thread-safe: one per connection, used by the
/// connection's thread. Fails with errc::storage_failed if SQLite fails, errc::data_dir_damaged if
/// a stored policy no longer parses; a failed call changes nothing. A change made inside the
/// caller's transaction runs in a savepoint of it.
class Policies {
 public:
  explicit Policies(SQLite::Database& db) : db_(db) {}

  /// Sets (replaces) the policy of `audience` ("default" or an existing group) and advances the
  /// policy version, in one transaction. Returns the new version. errc::no_such_group for an
  /// audience that is neither.
  Result<std::int64_t> set(std::string_view audience, const protocol::PolicyFile& file,
                           UnixTime now);
  /// Removes a group's policy (its members fall back to the others); "default" resets to the
  /// built-in defaults. Advances the version if something was removed. True if there was one.
  Result<bool> remove(std::string_view audience);
  /// Every policy set, "default" first, then groups by id.
  Result<std::vector<AssignedPolicy>> list();
  /// The policy `login`'s devices are under: the default policy and the policies of every group
  /// `login` is a current member of, merged by protocol::effective_policy.
  Result<EffectivePolicy> effective_for(std::string_view login);
  /// The 'policy' counter.
  Result<std::int64_t> version();

 private:
  SQLite::Database& db_;
};

/// Advances the 'policy' counter inside the caller's open transaction: every change that may
/// alter some device's effective policy calls it (policy set/remove, a group member added or
/// removed). Throws SQLite::Exception like the statements around it.
void advance_policy_version(SQLite::Database& db);

}  // namespace kaban::server
