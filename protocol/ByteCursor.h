// Bounds-checked big-endian reading and writing for the binary datagram codecs.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/Result.h"

namespace tether::protocol {

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> data) : data_(data) {}

  [[nodiscard]] std::size_t offset() const noexcept { return offset_; }
  [[nodiscard]] std::size_t remaining() const noexcept { return data_.size() - offset_; }

  [[nodiscard]] Result<std::uint8_t> u8(std::string_view field) {
    TETHER_TRY(need(1, field));
    return data_[offset_++];
  }
  [[nodiscard]] Result<std::uint16_t> u16(std::string_view field) {
    TETHER_TRY(need(2, field));
    const auto v = static_cast<std::uint16_t>((data_[offset_] << 8) | data_[offset_ + 1]);
    offset_ += 2;
    return v;
  }
  [[nodiscard]] Result<std::uint32_t> u32(std::string_view field) {
    TETHER_TRY(need(4, field));
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | data_[offset_ + i];
    offset_ += 4;
    return v;
  }
  [[nodiscard]] Result<std::uint64_t> u64(std::string_view field) {
    TETHER_TRY(need(8, field));
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | data_[offset_ + i];
    offset_ += 8;
    return v;
  }
  [[nodiscard]] Result<std::span<const std::uint8_t>> bytes(std::size_t n, std::string_view field) {
    TETHER_TRY(need(n, field));
    auto out = data_.subspan(offset_, n);
    offset_ += n;
    return out;
  }
  // A string with a one-byte length prefix.
  [[nodiscard]] Result<std::string> short_string(std::string_view field, std::size_t max_len) {
    TETHER_ASSIGN_OR_RETURN(std::uint8_t len, u8(field));
    if (len > max_len) {
      return make_error(Errc::kTooLarge, std::string(field) + " is " + std::to_string(len) +
                                             " bytes, more than " + std::to_string(max_len));
    }
    TETHER_ASSIGN_OR_RETURN(auto raw, bytes(len, field));
    return std::string(reinterpret_cast<const char*>(raw.data()), raw.size());
  }

 private:
  [[nodiscard]] Status need(std::size_t n, std::string_view field) const {
    if (remaining() < n) {
      return make_error(Errc::kTruncated, "datagram truncated at offset " +
                                              std::to_string(offset_) + " reading " +
                                              std::string(field));
    }
    return {};
  }

  std::span<const std::uint8_t> data_;
  std::size_t offset_ = 0;
};

class ByteWriter {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) {
    out_.push_back(static_cast<std::uint8_t>(v >> 8));
    out_.push_back(static_cast<std::uint8_t>(v));
  }
  void u32(std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
      out_.push_back(static_cast<std::uint8_t>(v >> shift));
  }
  void u64(std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8)
      out_.push_back(static_cast<std::uint8_t>(v >> shift));
  }
  void bytes(std::span<const std::uint8_t> data) {
    out_.insert(out_.end(), data.begin(), data.end());
  }
  void zeros(std::size_t n) { out_.insert(out_.end(), n, 0); }
  // Callers validate the length (<= 255) before writing.
  void short_string(std::string_view s) {
    u8(static_cast<std::uint8_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }

  [[nodiscard]] std::size_t size() const noexcept { return out_.size(); }
  [[nodiscard]] std::vector<std::uint8_t>& buffer() noexcept { return out_; }
  [[nodiscard]] std::vector<std::uint8_t> take() && { return std::move(out_); }

 private:
  std::vector<std::uint8_t> out_;
};

}  // namespace tether::protocol
