#include "agent/EndpointList.h"

#include <algorithm>

namespace tether::agent {

Result<EndpointList> EndpointList::parse(std::string_view primary, std::string_view fallbacks) {
  std::vector<protocol::ServerUrl> endpoints;
  std::vector<std::string> seen;
  auto add = [&](std::string_view text, const char* what) -> Status {
    auto url = protocol::parse_server_url(text);
    if (!url.ok()) return url.error().context(what);
    const std::string canonical = url->to_string();
    if (std::find(seen.begin(), seen.end(), canonical) != seen.end()) return {};
    if (endpoints.size() == kMaxEndpoints) {
      return make_error(Errc::kTooLarge, std::string(what) + ": more than " +
                                             std::to_string(kMaxEndpoints) + " endpoints");
    }
    seen.push_back(canonical);
    endpoints.push_back(std::move(url).value());
    return {};
  };
  TETHER_TRY(add(primary, "server.url"));
  constexpr std::string_view kSeparators = " ,\t";
  std::size_t pos = 0;
  while (pos < fallbacks.size()) {
    const std::size_t start = fallbacks.find_first_not_of(kSeparators, pos);
    if (start == std::string_view::npos) break;
    std::size_t end = fallbacks.find_first_of(kSeparators, start);
    if (end == std::string_view::npos) end = fallbacks.size();
    TETHER_TRY(add(fallbacks.substr(start, end - start), "server.fallback_urls"));
    pos = end;
  }
  return EndpointList(std::move(endpoints));
}

EndpointList::EndpointList(std::vector<protocol::ServerUrl> endpoints)
    : endpoints_(std::move(endpoints)) {
  if (endpoints_.empty()) endpoints_.emplace_back();
}

std::vector<std::string> EndpointList::urls() const {
  std::vector<std::string> out;
  out.reserve(endpoints_.size());
  for (const auto& e : endpoints_) out.push_back(e.to_string());
  return out;
}

bool EndpointList::advance() noexcept {
  index_ = (index_ + 1) % endpoints_.size();
  return index_ == 0;
}

EndpointList::ms EndpointList::failed(ReconnectBackoff& backoff) {
  return advance() ? backoff.after_failure() : backoff.between_endpoints();
}

EndpointList::ms EndpointList::refused(ReconnectBackoff& backoff) {
  return advance() ? backoff.after_refusal() : backoff.between_endpoints();
}

EndpointList::ms EndpointList::restarting(ReconnectBackoff& backoff) {
  return backoff.after_server_restart();
}

}  // namespace tether::agent
