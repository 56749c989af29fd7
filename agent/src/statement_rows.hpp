// Internal to kaban::agent: how a learning statement becomes a row of the statements table,
// shared by LearningLog (statements made here) and Messages (statements the inbox echoes).
#pragma once

#include <string_view>

namespace SQLite {
class Database;
}

namespace kaban::agent::detail {

enum class StatementStored {
  added,    ///< a new row
  held,     ///< the id was held already (its upload flag may have been raised)
  skipped,  ///< the text is not a statement Kaban reads, or not `login`'s
};

enum class Uploaded { no, yes };

/// Stores the statement `text` once by id, in the caller's transaction if one is open. `login`
/// must be the actor's account name. With Uploaded::yes (the server echoed it) a held row is
/// marked uploaded. Throws SQLite::Exception on a store failure.
StatementStored store_statement(SQLite::Database& db, std::string_view text, std::string_view login,
                                Uploaded uploaded);

}  // namespace kaban::agent::detail
