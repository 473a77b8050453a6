// The web app's static files (webapp/ in the source tree, /usr/share/tether/webapp when
// installed) and Debian's noVNC modules under /novnc/, served by tether-server next to the
// REST API. Read-only GET/HEAD of regular files with known types; every answer carries the
// Content-Security-Policy and nosniff (docs/security.md, Web app).
#pragma once

#include <string>

#include "server/HttpMessage.h"

namespace tether::server {

struct WebAppSettings {
  std::string root;        // web.root: index.html, app.js, viewer.html, ...
  std::string novnc_root;  // web.novnc_root: Debian's /usr/share/novnc (core/, vendor/)
};

class WebApp {
 public:
  explicit WebApp(WebAppSettings settings);

  // Whether a path is the web app's (everything but the API and the tunnels).
  [[nodiscard]] static bool owns(const std::string& path);
  // The answer to a request for `request.path`: a file, 404 (also for anything that is not
  // a plain path to a regular file inside the roots), or 405.
  [[nodiscard]] HttpResponse serve(const HttpRequest& request) const;

  // The Content-Security-Policy for pages reached at `host` (the Host header; ignored when it
  // is not a plain host[:port]).
  [[nodiscard]] static std::string content_security_policy(const std::string& host);

 private:
  WebAppSettings settings_;
};

}  // namespace tether::server
