// PostgreSQL for the store tests: the cluster the ctest fixture "postgresql" started
// (tests/pg/pg_fixture, its directory in TETHER_PG_FIXTURE) or one named by TETHER_PG_URL, and
// a fresh database per test (random name: tests run in parallel under ctest -j).
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

namespace tether::testing {

// The URL of the test cluster's maintenance database, or nullopt with `why` set.
inline std::optional<std::string> pg_server_url(std::string& why) {
  if (const char* url = std::getenv("TETHER_PG_URL"); url != nullptr && *url != '\0') return url;
  const char* dir = std::getenv("TETHER_PG_FIXTURE");
  if (dir == nullptr || *dir == '\0') {
    why =
        "neither TETHER_PG_FIXTURE nor TETHER_PG_URL is set: run under ctest (fixture "
        "\"postgresql\", tests/pg/pg_fixture) or point TETHER_PG_URL at a PostgreSQL server";
    return std::nullopt;
  }
  std::ifstream in(std::string(dir) + "/url");
  std::string url;
  if (!std::getline(in, url) || url.empty()) {
    why = std::string("no ") + dir + "/url: the PostgreSQL fixture did not start (see the " +
          "pg_fixture_start test's output)";
    return std::nullopt;
  }
  return url;
}

// `server_url` with its database replaced by `dbname`.
inline std::string pg_url_with_database(const std::string& server_url, const std::string& dbname) {
  const auto scheme = server_url.find("://");
  const auto slash = server_url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return server_url.substr(0, slash) + "/" + dbname;
}

// Runs one SQL command on `url`; "" or the error.
inline std::string pg_command(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    const auto status = PQresultStatus(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) error = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(conn);
  return error;
}

// The first column of the first row of `sql` on `url` ("" when none).
inline std::string pg_value(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::string value;
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) value = PQgetvalue(r, 0, 0);
    PQclear(r);
  }
  PQfinish(conn);
  return value;
}

// A database of its own for one test, dropped (with any connection left) at the end.
class PgTestDatabase {
 public:
  // ok() false with why() set when there is no cluster or the database cannot be made.
  PgTestDatabase() {
    auto server = pg_server_url(why_);
    if (!server) return;
    server_url_ = *server;
    std::array<std::uint8_t, 8> bytes{};
    RAND_bytes(bytes.data(), static_cast<int>(bytes.size()));
    name_ = "tether_test_";
    for (auto b : bytes) {
      const char* digits = "0123456789abcdef";
      name_ += digits[b >> 4];
      name_ += digits[b & 15];
    }
    if (auto error = pg_command(server_url_, "CREATE DATABASE " + name_); !error.empty()) {
      why_ = "cannot create a test database on " + server_url_ + ": " + error;
      name_.clear();
      return;
    }
    url_ = pg_url_with_database(server_url_, name_);
  }
  ~PgTestDatabase() {
    if (!name_.empty()) (void)pg_command(server_url_, "DROP DATABASE " + name_ + " WITH (FORCE)");
  }
  PgTestDatabase(const PgTestDatabase&) = delete;
  PgTestDatabase& operator=(const PgTestDatabase&) = delete;

  [[nodiscard]] bool ok() const { return !url_.empty(); }
  [[nodiscard]] const std::string& why() const { return why_; }
  [[nodiscard]] const std::string& url() const { return url_; }

 private:
  std::string server_url_;
  std::string name_;
  std::string url_;
  std::string why_;
};

}  // namespace tether::testing
