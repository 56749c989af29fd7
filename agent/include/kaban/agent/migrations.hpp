// The agent store's schema.
#pragma once

#include <span>

#include "kaban/schema/migrations.hpp"

namespace kaban::agent {

/// The agent store's schema, oldest first (applied by Store on open).
std::span<const schema::Migration> store_migrations();

}  // namespace kaban::agent
