// Error codes of the agent component.
#pragma once

#include <system_error>

namespace kaban::agent {

/// Expected failures of kaban::agent. Store failures that come from the encryption layer
/// (wrong PIN, damage) keep their kaban::crypto::errc codes.
enum class errc {
  store_exists = 1,  ///< create() where a store already is
  no_store,          ///< open() where there is none
  newer_schema,      ///< the store was written by a newer Kaban
  migration_failed,  ///< a schema migration failed; the store is left at the last version
  storage_failed,    ///< SQLite failed for another reason (disk full, permissions, I/O)
};

const std::error_category& error_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

}  // namespace kaban::agent

template <>
struct std::is_error_code_enum<kaban::agent::errc> : std::true_type {};
