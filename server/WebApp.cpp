#include "server/WebApp.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include "common/UniqueFd.h"

namespace tether::server {
namespace {

constexpr std::size_t kMaxPath = 256;
constexpr std::size_t kMaxDepth = 8;
constexpr off_t kMaxFileSize = 4 * 1024 * 1024;

struct FileType {
  std::string_view extension;
  const char* content_type;
};
// Anything else is not served.
constexpr FileType kTypes[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
};

const char* content_type_of(std::string_view name) {
  for (const auto& type : kTypes) {
    if (name.size() > type.extension.size() &&
        name.substr(name.size() - type.extension.size()) == type.extension) {
      return type.content_type;
    }
  }
  return nullptr;
}

bool segment_ok(std::string_view segment) {
  if (segment.empty() || segment.size() > 128) return false;
  // No hidden files, no "." or "..": a segment starts with a letter, digit, '_' or '-'.
  if (segment.front() == '.') return false;
  for (const char c : segment) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// "a/b/c.js" → segments, or empty when any is not acceptable.
std::vector<std::string_view> split_relative(std::string_view relative) {
  std::vector<std::string_view> out;
  if (relative.empty() || relative.size() > kMaxPath) return {};
  std::size_t start = 0;
  while (true) {
    const auto slash = relative.find('/', start);
    const auto segment = relative.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (!segment_ok(segment) || out.size() >= kMaxDepth) return {};
    out.push_back(segment);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

bool host_ok(const std::string& host) {
  if (host.empty() || host.size() > 255) return false;
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) return false;
  }
  return true;
}

std::string real_path(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(path.c_str(), nullptr),
                                                       &std::free);
  return resolved ? std::string(resolved.get()) : std::string();
}

HttpResponse with_security_headers(HttpResponse response, const std::string& host) {
  response.headers.emplace_back("Content-Security-Policy", WebApp::content_security_policy(host));
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  response.headers.emplace_back("X-Frame-Options", "DENY");
  response.headers.emplace_back("Referrer-Policy", "no-referrer");
  response.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  return response;
}

HttpResponse text_response(int status, std::string text) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(text) + "\n";
  return r;
}

// The file at `relative` inside `root`, when it really is inside (after symlinks), a regular
// file and small; nullopt otherwise.
std::optional<std::string> read_inside(const std::string& root, std::string_view relative) {
  const std::string real_root = real_path(root);
  if (real_root.empty()) return std::nullopt;
  const std::string real = real_path(real_root + "/" + std::string(relative));
  if (real.empty() || real.size() <= real_root.size() + 1 ||
      real.compare(0, real_root.size(), real_root) != 0 || real[real_root.size()] != '/') {
    return std::nullopt;
  }
  UniqueFd fd(::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxFileSize) {
    return std::nullopt;
  }
  std::string data(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    got += static_cast<std::size_t>(n);
  }
  return data;
}

}  // namespace

WebApp::WebApp(WebAppSettings settings) : settings_(std::move(settings)) {}

bool WebApp::owns(const std::string& path) {
  return path.rfind("/api/", 0) != 0 && path != "/api" && path.rfind("/tunnel/", 0) != 0 &&
         path != "/up";
}

std::string WebApp::content_security_policy(const std::string& host) {
  // No inline script or style, nothing from elsewhere; the viewer's WebSocket goes to this
  // server only ('self' covers wss: to the same host in CSP 3; the explicit source is for
  // browsers that do not do that yet). noVNC draws its cursor from data: URLs.
  std::string connect = "'self'";
  if (host_ok(host)) connect += " wss://" + host;
  return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
         "connect-src " +
         connect + "; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
}

HttpResponse WebApp::serve(const HttpRequest& request) const {
  if (request.method != "GET" && request.method != "HEAD") {
    HttpResponse r = text_response(405, "method not allowed (allowed: GET, HEAD)");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return with_security_headers(std::move(r), request.host);
  }
  std::string_view path = request.path;
  std::string root = settings_.root;
  bool novnc = false;
  if (path == "/") {
    path = "/index.html";
  } else if (path.rfind("/novnc/", 0) == 0) {
    path.remove_prefix(6);
    root = settings_.novnc_root;
    novnc = true;
  }
  const auto not_found = [&] {
    return with_security_headers(text_response(404, "not found"), request.host);
  };
  if (path.empty() || path.front() != '/') return not_found();
  const std::string_view relative = path.substr(1);
  const auto segments = split_relative(relative);
  if (segments.empty()) return not_found();
  // Of noVNC only its modules: the library and what it imports, not its own pages.
  if (novnc && ((segments.front() != "core" && segments.front() != "vendor") ||
                !relative.ends_with(".js"))) {
    return not_found();
  }
  const char* type = content_type_of(segments.back());
  if (type == nullptr || root.empty()) return not_found();
  auto data = read_inside(root, relative);
  if (!data) return not_found();
  HttpResponse r;
  r.status = 200;
  r.content_type = type;
  r.body = std::move(*data);
  return with_security_headers(std::move(r), request.host);
}

}  // namespace tether::server
