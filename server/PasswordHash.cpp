#include "server/PasswordHash.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/Base64.h"

namespace tether::server {
namespace {

constexpr std::string_view kScheme = "pbkdf2-sha256";
constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kHashBytes = 32;
// Stored hashes with fewer iterations than this are refused as malformed; with more than the
// maximum they would let a stored value stall the loop.
constexpr int kMinIterations = 100'000;
constexpr int kMaxIterations = 10'000'000;

Result<std::array<std::uint8_t, kHashBytes>> derive(std::string_view password,
                                                    std::span<const std::uint8_t> salt,
                                                    int iterations) {
  std::array<std::uint8_t, kHashBytes> out{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(out.size()), out.data()) != 1) {
    return make_error(Errc::kCrypto, "PBKDF2 failed");
  }
  return out;
}

struct ParsedHash {
  int iterations = 0;
  std::vector<std::uint8_t> salt;
  std::vector<std::uint8_t> hash;
};

std::optional<ParsedHash> parse(std::string_view encoded) {
  auto next = [&encoded]() -> std::optional<std::string_view> {
    if (encoded.empty()) return std::nullopt;
    const auto dollar = encoded.find('$');
    std::string_view part = encoded.substr(0, dollar);
    encoded = dollar == std::string_view::npos ? std::string_view() : encoded.substr(dollar + 1);
    return part;
  };
  const auto scheme = next();
  const auto iterations = next();
  const auto salt = next();
  const auto hash = next();
  if (!scheme || !iterations || !salt || !hash || !encoded.empty() || *scheme != kScheme) {
    return std::nullopt;
  }
  ParsedHash parsed;
  auto [ptr, ec] = std::from_chars(iterations->data(), iterations->data() + iterations->size(),
                                   parsed.iterations);
  if (ec != std::errc() || ptr != iterations->data() + iterations->size() ||
      parsed.iterations < kMinIterations || parsed.iterations > kMaxIterations) {
    return std::nullopt;
  }
  auto salt_bytes = base64url_decode(*salt);
  auto hash_bytes = base64url_decode(*hash);
  if (!salt_bytes.ok() || !hash_bytes.ok() || salt_bytes->size() < 8 ||
      hash_bytes->size() != kHashBytes) {
    return std::nullopt;
  }
  parsed.salt = std::move(salt_bytes).value();
  parsed.hash = std::move(hash_bytes).value();
  return parsed;
}

}  // namespace

Result<std::string> hash_password(std::string_view password, int iterations) {
  if (iterations < kMinIterations || iterations > kMaxIterations) {
    return make_error(Errc::kInvalidArgument, "PBKDF2 iteration count out of range");
  }
  std::array<std::uint8_t, kSaltBytes> salt{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
    return make_error(Errc::kCrypto, "no randomness for a password salt");
  }
  TETHER_ASSIGN_OR_RETURN(auto hash, derive(password, salt, iterations));
  return std::string(kScheme) + "$" + std::to_string(iterations) + "$" + base64url_encode(salt) +
         "$" + base64url_encode(hash);
}

bool verify_password(std::string_view password, std::string_view encoded) {
  auto parsed = parse(encoded);
  if (!parsed) {
    // The same work as for a real hash, then no.
    (void)verify_password(password, decoy_password_hash());
    return false;
  }
  auto derived = derive(password, parsed->salt, parsed->iterations);
  if (!derived.ok()) return false;
  return CRYPTO_memcmp(derived->data(), parsed->hash.data(), kHashBytes) == 0;
}

const std::string& decoy_password_hash() {
  // A random salt and an all-zero hash: no password derives to it.
  static const std::string decoy = [] {
    std::array<std::uint8_t, kSaltBytes> salt{};
    (void)RAND_bytes(salt.data(), static_cast<int>(salt.size()));
    const std::array<std::uint8_t, kHashBytes> zero{};
    return std::string(kScheme) + "$" + std::to_string(kPasswordIterations) + "$" +
           base64url_encode(salt) + "$" + base64url_encode(zero);
  }();
  return decoy;
}

Result<std::string> random_password() {
  std::array<std::uint8_t, 18> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    return make_error(Errc::kCrypto, "no randomness for a password");
  }
  return base64url_encode(bytes);
}

Status check_password_policy(std::string_view password) {
  if (password.size() < kMinPasswordLength) {
    return make_error(Errc::kBadValue, "a password needs at least " +
                                           std::to_string(kMinPasswordLength) + " characters");
  }
  if (password.size() > kMaxPasswordLength) {
    return make_error(Errc::kBadValue, "a password may have at most " +
                                           std::to_string(kMaxPasswordLength) + " characters");
  }
  return {};
}

}  // namespace tether::server
