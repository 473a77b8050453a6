#include "RfbStreamParser.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace tether::bench {
namespace {

constexpr std::size_t kMaxText = 64 * 1024 * 1024;

void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

}  // namespace

bool ByteReader::refill() {
  if (begin_ == end_) begin_ = end_ = 0;
  if (end_ == buffer_.size()) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  const std::size_t got = fill_(buffer_.data() + end_, buffer_.size() - end_);
  end_ += got;
  bytes_in_ += got;
  return got > 0;
}

bool ByteReader::read(void* out, std::size_t n) {
  auto* dst = static_cast<std::uint8_t*>(out);
  while (n > 0) {
    if (begin_ == end_ && !refill()) return false;
    const std::size_t take = std::min(n, end_ - begin_);
    std::memcpy(dst, buffer_.data() + begin_, take);
    begin_ += take;
    bytes_used_ += take;
    dst += take;
    n -= take;
  }
  return true;
}

bool ByteReader::skip(std::size_t n) {
  while (n > 0) {
    if (begin_ == end_ && !refill()) return false;
    const std::size_t take = std::min(n, end_ - begin_);
    begin_ += take;
    bytes_used_ += take;
    n -= take;
  }
  return true;
}

bool ByteReader::u16(std::uint16_t& out) {
  std::uint8_t b[2];
  if (!read(b, 2)) return false;
  out = static_cast<std::uint16_t>(b[0] << 8 | b[1]);
  return true;
}

bool ByteReader::u32(std::uint32_t& out) {
  std::uint8_t b[4];
  if (!read(b, 4)) return false;
  out = static_cast<std::uint32_t>(b[0]) << 24 | static_cast<std::uint32_t>(b[1]) << 16 |
        static_cast<std::uint32_t>(b[2]) << 8 | b[3];
  return true;
}

std::string handshake(ByteReader& in, const WriteAll& write, ServerInit& init) {
  char version[13] = {};
  if (!in.read(version, 12)) return "the server closed before its version";
  int major = 0;
  int minor = 0;
  if (std::sscanf(version, "RFB %3d.%3d\n", &major, &minor) != 2 || major != 3) {
    return "not an RFB server: '" + std::string(version, 11) + "'";
  }
  minor = minor >= 8 ? 8 : (minor >= 7 ? 7 : 3);
  char ours[13];
  std::snprintf(ours, sizeof ours, "RFB 003.%03d\n", minor);
  if (!write(ours, 12)) return "cannot send the version";
  if (minor == 3) {
    std::uint32_t type = 0;
    if (!in.u32(type)) return "the server closed during security";
    if (type != 1) return "security type " + std::to_string(type) + " offered, not None";
  } else {
    std::uint8_t count = 0;
    if (!in.u8(count)) return "the server closed during security";
    if (count == 0) {
      std::uint32_t length = 0;
      std::string reason;
      if (in.u32(length) && length < 4096) {
        reason.resize(length);
        (void)in.read(reason.data(), length);
      }
      return "the server refused: " + reason;
    }
    std::vector<std::uint8_t> types(count);
    if (!in.read(types.data(), count)) return "the server closed during security";
    if (std::find(types.begin(), types.end(), 1) == types.end()) {
      return "the server does not offer security type None";
    }
    const std::uint8_t none = 1;
    if (!write(&none, 1)) return "cannot choose a security type";
    if (minor == 8) {
      std::uint32_t result = 1;
      if (!in.u32(result)) return "the server closed during security";
      if (result != 0) return "security failed";
    }
  }
  const std::uint8_t shared = 1;
  if (!write(&shared, 1)) return "cannot send ClientInit";
  std::uint16_t w = 0;
  std::uint16_t h = 0;
  std::uint8_t format[16];
  std::uint32_t name_length = 0;
  if (!in.u16(w) || !in.u16(h) || !in.read(format, 16) || !in.u32(name_length)) {
    return "the server closed before ServerInit";
  }
  if (name_length > 1 << 20) return "absurd desktop name length";
  init.width = w;
  init.height = h;
  init.bits_per_pixel = format[0];
  init.depth = format[1];
  init.name.resize(name_length);
  if (!in.read(init.name.data(), name_length)) return "the server closed inside ServerInit";
  return {};
}

std::vector<std::uint8_t> update_request(bool incremental, int width, int height) {
  std::vector<std::uint8_t> out{3, static_cast<std::uint8_t>(incremental ? 1 : 0)};
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<std::uint16_t>(width));
  put16(out, static_cast<std::uint16_t>(height));
  return out;
}

std::vector<std::uint8_t> client_setup(const std::vector<std::int32_t>& encodings, int width,
                                       int height) {
  // SetPixelFormat: 32 bpp, depth 24, little endian, true colour, RGB888 — what viewers
  // ask for, and what puts Tight into its 3-bytes-per-pixel mode.
  std::vector<std::uint8_t> out{0, 0, 0, 0, 32, 24, 0, 1};
  put16(out, 255);
  put16(out, 255);
  put16(out, 255);
  out.insert(out.end(), {16, 8, 0, 0, 0, 0});
  out.insert(out.end(), {2, 0});
  put16(out, static_cast<std::uint16_t>(encodings.size()));
  for (std::int32_t e : encodings) put32(out, static_cast<std::uint32_t>(e));
  const auto request = update_request(false, width, height);
  out.insert(out.end(), request.begin(), request.end());
  return out;
}

std::vector<std::int32_t> offered_encodings(const std::string& name, int quality, int compress) {
  // What a viewer such as TigerVNC offers besides its preferred encoding: CopyRect, the
  // cursor shape, LastRect and resizes.
  const std::vector<std::int32_t> common = {kEncodingCopyRect, kEncodingRichCursor,
                                            kEncodingLastRect, kEncodingDesktopSize};
  std::vector<std::int32_t> out;
  if (name == "tight") {
    out = {kEncodingTight, kEncodingQualityLevel0 + quality, kEncodingCompressLevel0 + compress};
  } else if (name == "zrle") {
    out = {kEncodingZrle, kEncodingCompressLevel0 + compress};
  } else if (name == "raw") {
    out = {kEncodingRaw};
  } else {
    return {};
  }
  out.insert(out.end(), common.begin(), common.end());
  return out;
}

bool RfbStreamParser::fail(std::string what) {
  error_ = std::move(what);
  return false;
}

void RfbStreamParser::resize(int width, int height) {
  width_ = width;
  height_ = height;
  coverage_.assign(static_cast<std::size_t>(total_pixels()), 0);
  covered_pixels_ = 0;
}

void RfbStreamParser::cover(int x, int y, int w, int h) {
  if (covered()) return;
  const int x1 = std::min(x + w, width_);
  const int y1 = std::min(y + h, height_);
  for (int row = std::max(y, 0); row < y1; ++row) {
    std::uint8_t* line = coverage_.data() + static_cast<std::size_t>(row) * width_;
    for (int col = std::max(x, 0); col < x1; ++col) {
      covered_pixels_ += line[col] == 0 ? 1 : 0;
      line[col] = 1;
    }
  }
  if (covered()) coverage_ = {};
}

bool RfbStreamParser::compact_length(ByteReader& in, std::uint32_t& out) {
  out = 0;
  for (int i = 0; i < 3; ++i) {
    std::uint8_t b = 0;
    if (!in.u8(b)) return false;
    if (i < 2) {
      out |= static_cast<std::uint32_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) return true;
    } else {
      out |= static_cast<std::uint32_t>(b) << 14;
    }
  }
  return true;
}

bool RfbStreamParser::tight(ByteReader& in, int w, int h) {
  // Tight with a 32-bit depth-24 RGB888 client format: pixels travel as 3 bytes (TPIXEL).
  constexpr std::size_t kTPixel = 3;
  constexpr std::size_t kMinToCompress = 12;
  std::uint8_t control = 0;
  if (!in.u8(control)) return false;
  const int kind = control >> 4;  // the low nibble resets zlib streams
  std::uint32_t length = 0;
  if (kind == 0x08) return in.skip(kTPixel);                               // fill
  if (kind == 0x09) return compact_length(in, length) && in.skip(length);  // JPEG
  if (kind > 0x09) return fail("Tight: unknown compression control " + std::to_string(control));
  // Basic compression: an optional filter, then zlib data (or raw when short).
  std::uint8_t filter = 0;
  if ((kind & 0x04) != 0 && !in.u8(filter)) return false;
  std::size_t row = static_cast<std::size_t>(w) * kTPixel;
  if (filter == 1) {  // palette
    std::uint8_t colours_minus_one = 0;
    if (!in.u8(colours_minus_one)) return false;
    const std::size_t colours = colours_minus_one + 1U;
    if (colours < 2) return fail("Tight: a palette of one colour");
    if (!in.skip(colours * kTPixel)) return false;
    row = colours == 2 ? (static_cast<std::size_t>(w) + 7) / 8 : static_cast<std::size_t>(w);
  } else if (filter > 2) {
    return fail("Tight: unknown filter " + std::to_string(filter));
  }
  const std::size_t size = row * static_cast<std::size_t>(h);
  if (size < kMinToCompress) return in.skip(size);
  return compact_length(in, length) && in.skip(length);
}

bool RfbStreamParser::rect(ByteReader& in, int x, int y, int w, int h, std::int32_t encoding,
                           bool& last) {
  ++by_encoding_[encoding];
  std::uint32_t length = 0;
  switch (encoding) {
    case kEncodingRaw:
      if (!in.skip(static_cast<std::size_t>(w) * h * 4)) return false;
      break;
    case kEncodingCopyRect:
      if (!in.skip(4)) return false;
      break;
    case kEncodingTight:
      if (!tight(in, w, h)) return false;
      break;
    case kEncodingZrle:
      if (!in.u32(length) || !in.skip(length)) return false;
      break;
    case kEncodingLastRect: last = true; return true;
    case kEncodingDesktopSize: resize(w, h); return true;
    case kEncodingPointerPos: return true;
    case kEncodingRichCursor:
      return in.skip(static_cast<std::size_t>(w) * h * 4 +
                     (static_cast<std::size_t>(w) + 7) / 8 * h);
    case kEncodingXCursor:
      if (w * h == 0) return true;
      return in.skip(6 + 2 * ((static_cast<std::size_t>(w) + 7) / 8) * h);
    default: return fail("rectangle in an encoding not offered: " + std::to_string(encoding));
  }
  ++rects_;
  cover(x, y, w, h);
  return true;
}

RfbStreamParser::Message RfbStreamParser::update(ByteReader& in) {
  std::uint8_t pad = 0;
  std::uint16_t count = 0;
  if (!in.u8(pad) || !in.u16(count)) return Message::kEnd;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint16_t x = 0;
    std::uint16_t y = 0;
    std::uint16_t w = 0;
    std::uint16_t h = 0;
    std::uint32_t encoding = 0;
    if (!in.u16(x) || !in.u16(y) || !in.u16(w) || !in.u16(h) || !in.u32(encoding)) {
      return Message::kEnd;
    }
    bool last = false;
    if (!rect(in, x, y, w, h, static_cast<std::int32_t>(encoding), last)) {
      return error_.empty() ? Message::kEnd : Message::kError;
    }
    if (last) break;
  }
  ++updates_;
  return Message::kUpdate;
}

RfbStreamParser::Message RfbStreamParser::next(ByteReader& in) {
  std::uint8_t type = 0;
  if (!in.u8(type)) return Message::kEnd;
  switch (type) {
    case 0: return update(in);
    case 1: {  // SetColourMapEntries
      std::uint8_t pad = 0;
      std::uint16_t first = 0;
      std::uint16_t count = 0;
      if (!in.u8(pad) || !in.u16(first) || !in.u16(count) || !in.skip(6U * count)) {
        return Message::kEnd;
      }
      return Message::kOther;
    }
    case 2: return Message::kOther;  // Bell
    case 3: {                        // ServerCutText
      std::uint8_t pad[3];
      std::uint32_t length = 0;
      if (!in.read(pad, 3) || !in.u32(length)) return Message::kEnd;
      // The extended clipboard sends a negative length; its payload is abs(length).
      const std::uint32_t size =
          (length & 0x80000000U) != 0
              ? static_cast<std::uint32_t>(-static_cast<std::int32_t>(length))
              : length;
      if (size > kMaxText) {
        (void)fail("absurd ServerCutText length");
        return Message::kError;
      }
      return in.skip(size) ? Message::kOther : Message::kEnd;
    }
    default:
      (void)fail("unexpected server message type " + std::to_string(type));
      return Message::kError;
  }
}

}  // namespace tether::bench
