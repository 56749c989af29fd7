// Reading chunk lists out of the store, shared by course content (Library) and message
// attachments (Attachments). Internal to kaban::agent.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include <SQLiteCpp/Statement.h>

#include "kaban/protocol/manifest.hpp"

namespace kaban::agent::detail {

/// The (hash, size) rows `query` yields, each hash once, in the order first seen. Throws
/// SQLite::Exception as the query does.
inline std::vector<protocol::ChunkRef> distinct_chunks(SQLite::Statement& query) {
  std::vector<protocol::ChunkRef> chunks;
  std::unordered_set<std::string> seen;
  while (query.executeStep()) {
    std::string hash = query.getColumn(0).getString();
    if (!seen.insert(hash).second)
      continue;
    chunks.push_back({std::move(hash), static_cast<std::uint64_t>(query.getColumn(1).getInt64())});
  }
  return chunks;
}

}  // namespace kaban::agent::detail
