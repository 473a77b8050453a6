#include "server/StoreFactory.h"

#include "server/PostgresStore.h"
#include "server/SqliteStore.h"

namespace tether::server {

bool is_postgres_url(std::string_view url) noexcept {
  return url.starts_with("postgresql://") || url.starts_with("postgres://");
}

Result<OpenedStore> open_store(const std::string& store_url, const std::string& state_dir) {
  if (store_url.empty()) {
    const std::string path = state_dir + "/tether.db";
    TETHER_ASSIGN_OR_RETURN(auto store, SqliteStore::open(path));
    return OpenedStore{std::move(store), "SQLite " + path};
  }
  if (!is_postgres_url(store_url)) {
    // ServerConfig refuses these with the setting's FILE:LINE; this is for other callers.
    return make_error(Errc::kBadValue,
                      "store.url must be empty (SQLite) or postgresql://... (PostgreSQL)");
  }
  TETHER_ASSIGN_OR_RETURN(auto store, PostgresStore::open(store_url));
  std::string description = "PostgreSQL " + store->description();
  return OpenedStore{std::move(store), std::move(description)};
}

}  // namespace tether::server
