// JSON parsing with hard limits, for text that came over a network.
//
// nlohmann::json alone would accept any size, any depth (and recurse on destruction), and
// silently keep the last of duplicate keys. This parser runs nlohmann's SAX lexer with a
// builder that stops at the first violated limit and says which.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/Result.h"

namespace tether::protocol {

struct JsonLimits {
  std::size_t max_bytes = 1024 * 1024;  // whole document
  std::size_t max_depth = 16;           // objects/arrays nested
  std::size_t max_string_bytes = 64 * 1024;
  std::size_t max_key_bytes = 128;
  std::size_t max_array_items = 4096;    // per array
  std::size_t max_object_members = 512;  // per object
  std::size_t max_values = 100000;       // whole document
};

// Errors: kTooLarge, kTooDeep, kDuplicateKey, kSyntax (with the byte offset), kBadValue for
// numbers that are not finite.
[[nodiscard]] Result<nlohmann::json> parse_limited_json(std::string_view text,
                                                        const JsonLimits& limits);

}  // namespace tether::protocol
