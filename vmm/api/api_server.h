// Firecracker's API socket: HTTP/1.1 over a Unix socket, served by one thread of its own that
// polls the listening socket and its connections and hands every request to an ApiHandler, one
// at a time. Requests are parsed by Debian's libhttp-parser (Node.js's parser; a static library,
// so the kindling binary stays statically linked). Limits: 51200-byte bodies (Firecracker's
// default --http-api-max-payload-size), 8 KiB of request line and headers, 16 connections;
// anything over them or malformed is answered 400 with a fault_message and the connection
// closed. A connection that stalls inside a request is closed after 5 s.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "common/event_fd.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/api/api_handler.h"

namespace kindling::vmm::api {

enum class ServerError {
  kPath,    // the socket path is taken (not a stale socket) or cannot be bound
  kListen,  // listening failed, or the thread could not start
};
const char* to_string(ServerError e);
using ServerErr = Error<ServerError>;

// Largest request body accepted.
inline constexpr size_t kMaxPayloadBytes = 51200;
// Largest request line plus headers accepted.
inline constexpr size_t kMaxHeaderBytes = 8192;
// Most connections served at once; more are accepted and closed at once.
inline constexpr size_t kMaxConnections = 16;

// Prepares `path` for a new socket: absent is fine; a stale socket (nobody accepts on it) is
// removed; anything else (a live socket, a file, a folder) is refused.
Result<void, ServerErr> claim_socket_path(const std::string& path);

// A listening API socket. The socket file (mode 0600) is removed when it is destroyed.
class ApiServer {
 public:
  // Claims `path`, binds with mode 0600 and starts serving on a thread of its own, which
  // confines itself to the API's seccomp allow-list when `confine`. Call before any other
  // thread exists (the mode is set through the process umask while binding).
  static Result<std::unique_ptr<ApiServer>, ServerErr> start(const std::string& path,
                                                             ApiHandler& handler,
                                                             bool confine = false);
  // Stops serving, joins the thread, removes the socket file.
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

 private:
  ApiServer(std::string path, UniqueFd listener, EventFd stop, ApiHandler& handler);
  void serve(bool confine);

  std::string path_;
  UniqueFd listener_;
  EventFd stop_;
  ApiHandler& handler_;
  std::thread thread_;
};

}  // namespace kindling::vmm::api
