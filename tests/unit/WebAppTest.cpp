// The web app's static file server (server/WebApp.h): types, headers, and what it refuses.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "TempDir.h"
#include "server/WebApp.h"

namespace tether::server {
namespace {

using testing::TempDir;

void write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

class WebAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write(dir_ / "web/index.html", "<!DOCTYPE html>index");
    write(dir_ / "web/app.js", "export {};");
    write(dir_ / "web/style.css", "body{}");
    write(dir_ / "web/sub/page.html", "sub");
    write(dir_ / "web/.hidden.html", "hidden");
    write(dir_ / "web/notes.md", "markdown");
    write(dir_ / "secret.html", "secret");
    write(dir_ / "novnc/core/rfb.js", "export default class RFB {}");
    write(dir_ / "novnc/vendor/pako/lib/zlib/inflate.js", "export {};");
    write(dir_ / "novnc/vnc.html", "<html>");
    std::filesystem::create_symlink(dir_ / "secret.html", dir_ / "web/link.html");
    app_ = std::make_unique<WebApp>(WebAppSettings{dir_ / "web", dir_ / "novnc"});
  }

  HttpResponse get(const std::string& path, const std::string& method = "GET") {
    HttpRequest req;
    req.method = method;
    req.path = path;
    req.host = "tether.example:8443";
    return app_->serve(req);
  }

  TempDir dir_;
  std::unique_ptr<WebApp> app_;
};

TEST_F(WebAppTest, ServesFilesWithTheirTypesAndSecurityHeaders) {
  auto index = get("/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "<!DOCTYPE html>index");
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  const std::string csp = header(index, "Content-Security-Policy");
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("connect-src 'self' wss://tether.example:8443"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  EXPECT_EQ(header(index, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(get("/index.html").body, index.body);
  EXPECT_EQ(get("/app.js").content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(get("/style.css").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(get("/sub/page.html").status, 200);
  EXPECT_EQ(get("/novnc/core/rfb.js").status, 200);
  EXPECT_EQ(get("/novnc/core/rfb.js").content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(get("/novnc/vendor/pako/lib/zlib/inflate.js").status, 200);
  EXPECT_EQ(get("/index.html", "HEAD").status, 200);
}

TEST_F(WebAppTest, RefusesTraversalHiddenFilesDirectoriesAndUnknownTypes) {
  for (const char* path : {"/../secret.html",
                           "/sub/../../secret.html",
                           "/./index.html",
                           "/.hidden.html",
                           "/sub",
                           "/sub/",
                           "//index.html",
                           "/sub//page.html",
                           "/notes.md",
                           "/link.html",
                           "/missing.html",
                           "/index.html/",
                           "/%2e%2e/secret.html",
                           "/..%2fsecret.html",
                           "/index.html\\..",
                           "/novnc/vnc.html",
                           "/novnc/",
                           "/novnc/../secret.html",
                           "/novnc/core/../../secret.html",
                           "/novnc/core",
                           "/novnc//core/rfb.js",
                           ""}) {
    auto r = get(path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.body.find("secret"), std::string::npos) << path;
    EXPECT_EQ(header(r, "X-Content-Type-Options"), "nosniff") << path;
    EXPECT_FALSE(header(r, "Content-Security-Policy").empty()) << path;
  }
  EXPECT_EQ(get("/index.html", "POST").status, 405);
}

TEST_F(WebAppTest, OwnsAllButTheApiAndTunnels) {
  EXPECT_TRUE(WebApp::owns("/"));
  EXPECT_TRUE(WebApp::owns("/viewer.html"));
  EXPECT_TRUE(WebApp::owns("/novnc/core/rfb.js"));
  EXPECT_FALSE(WebApp::owns("/api/v1/devices"));
  EXPECT_FALSE(WebApp::owns("/api"));
  EXPECT_FALSE(WebApp::owns("/tunnel/viewer/x"));
  EXPECT_FALSE(WebApp::owns("/up"));
}

TEST_F(WebAppTest, CspLeavesOutAHostThatIsNotPlain) {
  EXPECT_EQ(WebApp::content_security_policy("evil.example; script-src *").find("evil"),
            std::string::npos);
  EXPECT_EQ(WebApp::content_security_policy("").find("wss://"), std::string::npos);
  EXPECT_NE(WebApp::content_security_policy("[::1]:8443").find("wss://[::1]:8443"),
            std::string::npos);
}

}  // namespace
}  // namespace tether::server
