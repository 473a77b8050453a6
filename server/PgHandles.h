// Owners of libpq's handles for PostgresStore and PgClusterBus, declared without libpq-fe.h
// so that their includers need not see libpq.
#pragma once

#include <memory>

struct pg_conn;
struct pg_result;

namespace tether::server {

struct PgConnCloser {
  void operator()(pg_conn* conn) const noexcept;
};
struct PgResultClearer {
  void operator()(pg_result* result) const noexcept;
};
using PgConnPtr = std::unique_ptr<pg_conn, PgConnCloser>;
using PgResultPtr = std::unique_ptr<pg_result, PgResultClearer>;

}  // namespace tether::server
