// Which Store a server keeps its registry in (store.url, docs/configuration.md): SQLite in the
// state directory by default, or PostgreSQL for several instances on one database.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/Result.h"
#include "server/Store.h"

namespace tether::server {

struct OpenedStore {
  std::unique_ptr<Store> store;
  // For the log: "SQLite /var/lib/tether-server/tether.db" or "PostgreSQL postgresql://u@h/db"
  // (never with a password).
  std::string description;
};

// postgresql://... or postgres://...
[[nodiscard]] bool is_postgres_url(std::string_view url) noexcept;

// Opens (and migrates) the store `store_url` names: "" for STATE_DIR/tether.db.
[[nodiscard]] Result<OpenedStore> open_store(const std::string& store_url,
                                             const std::string& state_dir);

}  // namespace tether::server
