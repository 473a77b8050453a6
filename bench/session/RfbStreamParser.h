// The bench's RFB client side (bench/session, bench/first-frame): reads what a VNC server
// sends without decoding any pixels — Tight, ZRLE and Raw carry their sizes — so that the
// client costs next to nothing and measures the server, not itself. It counts bytes,
// framebuffer updates and rectangles, and says when the rectangles received so far cover the
// whole framebuffer (the "first full frame").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tether::bench {

// RFB encoding numbers (RFC 6143 and the registered pseudo-encodings).
inline constexpr std::int32_t kEncodingRaw = 0;
inline constexpr std::int32_t kEncodingCopyRect = 1;
inline constexpr std::int32_t kEncodingTight = 7;
inline constexpr std::int32_t kEncodingZrle = 16;
inline constexpr std::int32_t kEncodingQualityLevel0 = -32;
inline constexpr std::int32_t kEncodingCompressLevel0 = -256;
inline constexpr std::int32_t kEncodingDesktopSize = -223;
inline constexpr std::int32_t kEncodingLastRect = -224;
inline constexpr std::int32_t kEncodingPointerPos = -232;
inline constexpr std::int32_t kEncodingRichCursor = -239;
inline constexpr std::int32_t kEncodingXCursor = -240;

// Pulls bytes from somewhere (a socket, a test buffer) and counts them.
class ByteReader {
 public:
  // Fills up to `capacity` bytes; returns how many, 0 at the end (EOF, deadline, error).
  using Fill = std::function<std::size_t(std::uint8_t* out, std::size_t capacity)>;

  explicit ByteReader(Fill fill) : fill_(std::move(fill)), buffer_(256 * 1024) {}

  [[nodiscard]] bool read(void* out, std::size_t n);
  [[nodiscard]] bool skip(std::size_t n);
  [[nodiscard]] bool u8(std::uint8_t& out) { return read(&out, 1); }
  [[nodiscard]] bool u16(std::uint16_t& out);
  [[nodiscard]] bool u32(std::uint32_t& out);
  // Bytes taken from the source so far (buffered ones included).
  [[nodiscard]] std::uint64_t bytes_in() const noexcept { return bytes_in_; }
  // Bytes handed to the parser so far (messages completely read end on this count).
  [[nodiscard]] std::uint64_t bytes_used() const noexcept { return bytes_used_; }

 private:
  [[nodiscard]] bool refill();

  Fill fill_;
  std::vector<std::uint8_t> buffer_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_used_ = 0;
};

struct ServerInit {
  int width = 0;
  int height = 0;
  std::string name;
  int bits_per_pixel = 0;
  int depth = 0;
};

// The RFB handshake, security type None (3.8; 3.7 and 3.3 accepted); ClientInit shared.
// Writes through `write` (whole buffers). Empty error string on success.
using WriteAll = std::function<bool(const void* data, std::size_t n)>;
[[nodiscard]] std::string handshake(ByteReader& in, const WriteAll& write, ServerInit& init);

// SetPixelFormat (32 bpp, depth 24, little endian, RGB888), SetEncodings and a
// FramebufferUpdateRequest for the whole screen (non-incremental).
[[nodiscard]] std::vector<std::uint8_t> client_setup(const std::vector<std::int32_t>& encodings,
                                                     int width, int height);
[[nodiscard]] std::vector<std::uint8_t> update_request(bool incremental, int width, int height);

// The encodings a viewer offers for "tight" (with JPEG `quality` 0-9 and zlib `compress`),
// "zrle" or "raw"; empty for an unknown name.
[[nodiscard]] std::vector<std::int32_t> offered_encodings(const std::string& name, int quality,
                                                          int compress);

class RfbStreamParser {
 public:
  enum class Message { kUpdate, kOther, kEnd, kError };

  RfbStreamParser(int width, int height) { resize(width, height); }

  // Reads one server message. kUpdate: a whole FramebufferUpdate was read; kEnd: the
  // stream ended (possibly inside a message); kError: error() says what.
  [[nodiscard]] Message next(ByteReader& in);

  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] int width() const noexcept { return width_; }
  [[nodiscard]] int height() const noexcept { return height_; }
  [[nodiscard]] std::uint64_t updates() const noexcept { return updates_; }
  [[nodiscard]] std::uint64_t rects() const noexcept { return rects_; }
  // Rectangles per encoding number.
  [[nodiscard]] const std::map<std::int32_t, std::uint64_t>& by_encoding() const noexcept {
    return by_encoding_;
  }
  // True once the pixel rectangles received (since the start or the last resize) cover
  // the whole framebuffer.
  [[nodiscard]] bool covered() const noexcept { return covered_pixels_ == total_pixels(); }

 private:
  [[nodiscard]] bool fail(std::string what);
  [[nodiscard]] Message update(ByteReader& in);
  // Reads one rectangle's data; false on end or error (error_ set for errors).
  [[nodiscard]] bool rect(ByteReader& in, int x, int y, int w, int h, std::int32_t encoding,
                          bool& last);
  [[nodiscard]] bool tight(ByteReader& in, int w, int h);
  [[nodiscard]] bool compact_length(ByteReader& in, std::uint32_t& out);
  void cover(int x, int y, int w, int h);
  void resize(int width, int height);
  [[nodiscard]] std::uint64_t total_pixels() const noexcept {
    return static_cast<std::uint64_t>(width_) * static_cast<std::uint64_t>(height_);
  }

  int width_ = 0;
  int height_ = 0;
  std::vector<std::uint8_t> coverage_;  // one byte per pixel until covered
  std::uint64_t covered_pixels_ = 0;
  std::uint64_t updates_ = 0;
  std::uint64_t rects_ = 0;
  std::map<std::int32_t, std::uint64_t> by_encoding_;
  std::string error_;
};

}  // namespace tether::bench
