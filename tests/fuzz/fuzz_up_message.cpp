// UP messages as the server and the agent receive them: envelope, then typed body. Anything
// that decodes must re-encode and decode to the same value.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protocol/UpMessage.h"

using namespace tether::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto envelope = parse_envelope(text);
  if (!envelope.ok()) return 0;
  auto body = decode_body(*envelope);
  if (!body.ok()) return 0;
  const Envelope again = make_message(envelope->id, *body);
  auto reparsed = parse_envelope(serialize_envelope(again));
  if (!reparsed.ok()) std::abort();
  auto redecoded = decode_body(*reparsed);
  if (!redecoded.ok() || !(*redecoded == *body)) std::abort();
  return 0;
}
