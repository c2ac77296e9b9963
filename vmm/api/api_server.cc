#include "vmm/api/api_server.h"

#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/unique_fd.h"

namespace kindling::vmm::api {

const char* to_string(ServerError) {
  return "";
}

namespace {

Unexpected<ServerErr> server_fail(ServerError code, const std::string& path,
                                  const std::string& why) {
  return fail(code, 0, "--api-sock " + path + ": " + why);
}

// Whether something accepts connections on the socket at `path`.
bool socket_is_live(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return true;  // cannot tell: do not remove it
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return true;
  return errno != ECONNREFUSED;
}

void answer(const ApiResponse& r, httplib::Response& res) {
  res.status = r.status;
  if (!r.body.empty()) res.set_content(r.body, "application/json");
}

}  // namespace

Result<void, ServerErr> claim_socket_path(const std::string& path) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return server_fail(ServerError::kPath, path, "the path must be 1 to 107 bytes");
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return server_fail(ServerError::kPath, path, std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return server_fail(ServerError::kPath, path, "exists and is not a socket; not replacing it");
  }
  if (socket_is_live(path)) {
    return server_fail(ServerError::kPath, path, "another process is serving on this socket");
  }
  if (::unlink(path.c_str()) != 0)
    return server_fail(ServerError::kPath, path, std::strerror(errno));
  KLOG_INFO("--api-sock %s: removed a stale socket", path.c_str());
  return {};
}

Result<std::unique_ptr<ApiServer>, ServerErr> ApiServer::start(const std::string& path,
                                                               ApiHandler& handler) {
  if (auto ok = claim_socket_path(path); !ok) return ok.take_error();
  auto server = std::make_unique<httplib::Server>();
  // A VMM is lean: one worker answers the requests one at a time, as Firecracker's API thread.
  server->new_task_queue = [] { return new httplib::ThreadPool(1); };
  server->set_address_family(AF_UNIX);
  server->set_payload_max_length(kMaxPayloadBytes);
  // A slow or idle client holds the only worker for at most this long.
  server->set_read_timeout(2, 0);
  server->set_write_timeout(2, 0);
  server->set_keep_alive_timeout(1);
  auto forward = [&handler](const httplib::Request& req, httplib::Response& res) {
    answer(handler.handle(ApiRequest{req.method, req.path, req.body}), res);
  };
  server->Get(".*", forward);
  server->Put(".*", forward);
  server->Patch(".*", forward);
  server->Post(".*", forward);
  server->Delete(".*", forward);
  // What cpp-httplib refuses itself (malformed request, oversized body 413, long URI 414,
  // unknown method): Firecracker's 400 with a fault message.
  httplib::Server::HandlerWithResponse on_error = [](const httplib::Request& req,
                                                     httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string why = res.status == 413 ? "request body too large (over " +
                                              std::to_string(kMaxPayloadBytes) + " bytes)"
                                        : "malformed or unsupported HTTP request";
    if (!req.method.empty() && res.status == 404) {
      why = "Invalid request method and/or path: " + req.method + " " + req.path + ".";
    }
    answer(fault(why), res);
    return httplib::Server::HandlerResponse::Handled;
  };
  server->set_error_handler(on_error);
  const mode_t old_mask = ::umask(0177);  // the socket file is created 0600
  const bool bound = server->bind_to_port(path, 80);
  ::umask(old_mask);
  if (!bound) return server_fail(ServerError::kPath, path, "cannot bind the socket");
  std::unique_ptr<ApiServer> api(new ApiServer(path, std::move(server)));
  httplib::Server* s = api->server_.get();
  api->thread_ = std::thread([s] { s->listen_after_bind(); });
  return api;
}

ApiServer::ApiServer(std::string path, std::unique_ptr<httplib::Server> server)
    : path_(std::move(path)), server_(std::move(server)) {}

ApiServer::~ApiServer() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

}  // namespace kindling::vmm::api
