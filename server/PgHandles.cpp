#include "server/PgHandles.h"

#include <libpq-fe.h>

namespace tether::server {

void PgConnCloser::operator()(pg_conn* conn) const noexcept {
  PQfinish(conn);
}

void PgResultClearer::operator()(pg_result* result) const noexcept {
  PQclear(result);
}

}  // namespace tether::server
