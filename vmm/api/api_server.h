// Firecracker's API socket: HTTP/1.1 over a Unix socket (cpp-httplib), one accept thread and
// one worker thread, every request handed to an ApiHandler. Limits: 51200-byte bodies
// (Firecracker's default --http-api-max-payload-size), cpp-httplib's 8 KiB request line and
// header lines; anything over them or malformed is answered 400 with a fault_message.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "common/result.h"
#include "vmm/api/api_handler.h"

namespace httplib {
class Server;
}

namespace kindling::vmm::api {

enum class ServerError {
  kPath,    // the socket path is taken (not a stale socket) or cannot be bound
  kListen,  // listening failed
};
const char* to_string(ServerError e);
using ServerErr = Error<ServerError>;

// Largest request body accepted.
inline constexpr size_t kMaxPayloadBytes = 51200;

// Prepares `path` for a new socket: absent is fine; a stale socket (nobody accepts on it) is
// removed; anything else (a live socket, a file, a folder) is refused.
Result<void, ServerErr> claim_socket_path(const std::string& path);

// A listening API socket. The socket file (mode 0600) is removed when it is destroyed.
class ApiServer {
 public:
  // Claims `path`, binds with mode 0600 and starts serving on a thread of its own. Call before
  // any other thread exists (the mode is set through the process umask while binding).
  static Result<std::unique_ptr<ApiServer>, ServerErr> start(const std::string& path,
                                                             ApiHandler& handler);
  // Stops serving, joins the threads, removes the socket file.
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

 private:
  ApiServer(std::string path, std::unique_ptr<httplib::Server> server);

  std::string path_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;  // the accept loop; the worker is the server's one-thread pool
};

}  // namespace kindling::vmm::api
