#include "server/AdminToken.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <array>
#include <cstdint>

#include "common/Base64.h"
#include "common/FileIo.h"

namespace tether::server {

Result<AdminToken> AdminToken::load_or_create(const std::string& path, bool& created) {
  created = false;
  if (!file_exists(path)) {
    std::array<std::uint8_t, 32> bytes{};
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
      return make_error(Errc::kCrypto, "no randomness for the admin token");
    }
    std::string value = base64url_encode(bytes);
    TETHER_TRY(write_file_atomic(path, value + "\n", 0600));
    created = true;
    return AdminToken(std::move(value));
  }
  TETHER_TRY(check_private_file(path));
  TETHER_ASSIGN_OR_RETURN(std::string text, read_file(path, 4096, true));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  auto decoded = base64url_decode(text);
  if (!decoded.ok() || decoded->size() < 16) {
    return make_error(Errc::kBadValue,
                      path + " does not hold an admin token (delete it to make a new one)");
  }
  return AdminToken(std::move(text));
}

AdminToken AdminToken::from_value(std::string value) {
  return AdminToken(std::move(value));
}

bool AdminToken::matches(std::string_view presented) const noexcept {
  if (value_.empty() || presented.size() != value_.size()) return false;
  return CRYPTO_memcmp(presented.data(), value_.data(), value_.size()) == 0;
}

}  // namespace tether::server
