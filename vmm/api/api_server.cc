#include "vmm/api/api_server.h"

#include <http_parser.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <system_error>
#include <vector>

#include "common/log.h"
#include "common/seccomp/seccomp.h"
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

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    default:
      return "Internal Server Error";
  }
}

std::string serialize(const ApiResponse& r, bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
  out += "Server: kindling\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  // No Content-Length on a 204 (RFC 9110 8.6).
  if (r.status != 204) {
    out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(r.body.size()) +
           "\r\n\r\n" + r.body;
  } else {
    out += "\r\n";
  }
  return out;
}

using Clock = std::chrono::steady_clock;
constexpr auto kStallLimit = std::chrono::seconds(5);  // inside a request, without progress
constexpr int kWriteTimeoutMs = 2000;

// One client connection and the request being parsed on it.
struct Connection {
  UniqueFd fd;
  http_parser parser{};
  size_t header_bytes = 0;
  ApiRequest request;
  bool in_request = false;  // bytes of a request seen, its end not yet
  bool complete = false;    // a whole request is ready (the parser is paused on it)
  std::string error;        // the 400's fault message when the request is refused
  Clock::time_point last_progress = Clock::now();
};

Connection* of(http_parser* p) {
  return static_cast<Connection*>(p->data);
}

int on_message_begin(http_parser* p) {
  Connection* c = of(p);
  c->request = ApiRequest{};
  c->header_bytes = 0;
  c->in_request = true;
  return 0;
}

int count_header(http_parser* p, size_t n) {
  Connection* c = of(p);
  c->header_bytes += n;
  if (c->header_bytes > kMaxHeaderBytes) {
    c->error =
        "request line and headers too large (over " + std::to_string(kMaxHeaderBytes) + " bytes)";
    return 1;
  }
  return 0;
}

int on_url(http_parser* p, const char* at, size_t n) {
  if (count_header(p, n) != 0) return 1;
  of(p)->request.path.append(at, n);
  return 0;
}

int on_header_data(http_parser* p, const char*, size_t n) {
  return count_header(p, n);
}

int on_headers_complete(http_parser* p) {
  Connection* c = of(p);
  // ULLONG_MAX: no Content-Length (chunked or none); on_body counts then.
  if (p->content_length != ULLONG_MAX && p->content_length > kMaxPayloadBytes) {
    c->error = "Request payload with size " + std::to_string(p->content_length) +
               " is larger than the limit of " + std::to_string(kMaxPayloadBytes) +
               " allowed by server.";
    return 1;
  }
  c->request.method = http_method_str(static_cast<http_method>(p->method));
  // The handler takes the path alone: drop a query string.
  if (size_t q = c->request.path.find('?'); q != std::string::npos) c->request.path.resize(q);
  return 0;
}

int on_body(http_parser* p, const char* at, size_t n) {
  Connection* c = of(p);
  if (c->request.body.size() + n > kMaxPayloadBytes) {
    c->error = "Request payload larger than the limit of " + std::to_string(kMaxPayloadBytes) +
               " allowed by server.";
    return 1;
  }
  c->request.body.append(at, n);
  return 0;
}

int on_message_complete(http_parser* p) {
  Connection* c = of(p);
  c->complete = true;
  c->in_request = false;
  http_parser_pause(p, 1);  // one request at a time: the rest of the buffer waits
  return 0;
}

const http_parser_settings kSettings = [] {
  http_parser_settings s{};
  s.on_message_begin = on_message_begin;
  s.on_url = on_url;
  s.on_header_field = on_header_data;
  s.on_header_value = on_header_data;
  s.on_headers_complete = on_headers_complete;
  s.on_body = on_body;
  s.on_message_complete = on_message_complete;
  return s;
}();

// Writes all of `data` to a non-blocking socket, waiting at most kWriteTimeoutMs for room.
bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, kWriteTimeoutMs) > 0) continue;
    }
    return false;
  }
  return true;
}

// Feeds `data` to the connection's parser, answering each complete request. False: close it.
bool feed(Connection& c, const char* data, size_t len, ApiHandler& handler) {
  while (true) {
    const size_t used = http_parser_execute(&c.parser, &kSettings, data, len);
    const http_errno err = HTTP_PARSER_ERRNO(&c.parser);
    if (c.complete) {
      c.complete = false;
      const bool keep_alive = http_should_keep_alive(&c.parser) != 0;
      if (!write_all(c.fd.get(), serialize(handler.handle(c.request), keep_alive))) return false;
      if (!keep_alive) return false;
      http_parser_pause(&c.parser, 0);
      data += used;
      len -= used;
      if (len == 0) return true;
      continue;
    }
    if (err != HPE_OK || c.parser.upgrade) {
      std::string why = c.error;
      if (why.empty()) {
        why = std::string("malformed HTTP request: ") +
              (c.parser.upgrade ? "protocol upgrade" : http_errno_description(err));
      }
      (void)write_all(c.fd.get(), serialize(fault(why), false));
      return false;
    }
    return true;  // everything consumed; the request goes on in the next read
  }
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
                                                               ApiHandler& handler, bool confine) {
  if (auto ok = claim_socket_path(path); !ok) return ok.take_error();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return server_fail(ServerError::kListen, path, std::strerror(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const mode_t old_mask = ::umask(0177);  // the socket file is created 0600
  const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0) return server_fail(ServerError::kPath, path, std::strerror(bind_errno));
  if (::listen(fd.get(), 16) != 0) {
    const int e = errno;
    ::unlink(path.c_str());
    return server_fail(ServerError::kListen, path, std::strerror(e));
  }
  auto stop = EventFd::create();
  if (!stop) {
    ::unlink(path.c_str());
    return server_fail(ServerError::kListen, path, stop.error().message());
  }
  std::unique_ptr<ApiServer> api(new ApiServer(path, std::move(fd), std::move(*stop), handler));
  try {
    api->thread_ = std::thread([s = api.get(), confine] { s->serve(confine); });
  } catch (const std::system_error& e) {
    return server_fail(ServerError::kListen, path, e.what());  // the destructor unlinks
  }
  return api;
}

ApiServer::ApiServer(std::string path, UniqueFd listener, EventFd stop, ApiHandler& handler)
    : path_(std::move(path)),
      listener_(std::move(listener)),
      stop_(std::move(stop)),
      handler_(handler) {}

ApiServer::~ApiServer() {
  (void)stop_.signal();
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void ApiServer::serve(bool confine) {
  if (confine) {
    if (auto ok = seccomp::install(seccomp::ThreadKind::kApi, "api"); !ok) {
      KLOG_ERROR("API socket not served: %s", ok.error().message().c_str());
      return;
    }
  }
  std::vector<std::unique_ptr<Connection>> conns;
  std::vector<pollfd> fds;
  char buf[16384];
  for (;;) {
    fds.assign({{stop_.fd(), POLLIN, 0}, {listener_.get(), POLLIN, 0}});
    for (const auto& c : conns) fds.push_back({c->fd.get(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 1000) < 0) {
      if (errno == EINTR) continue;
      KLOG_ERROR("API socket: poll: %s", std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;
    const auto now = Clock::now();
    // Served before new ones are accepted: fds[2 + i] belongs to conns[i].
    for (size_t i = 0; i < conns.size(); ++i) {
      Connection& c = *conns[i];
      bool keep = true;
      if (fds[2 + i].revents != 0) {
        ssize_t n = ::recv(c.fd.get(), buf, sizeof(buf), 0);
        if (n > 0) {
          c.last_progress = now;
          keep = feed(c, buf, static_cast<size_t>(n), handler_);
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          keep = false;  // closed by the client, or broken
        }
      } else if (c.in_request && now - c.last_progress > kStallLimit) {
        keep = false;  // a stalled request does not hold a connection for ever
      }
      if (!keep) conns[i].reset();
    }
    std::erase_if(conns, [](const auto& c) { return c == nullptr; });
    if (fds[1].revents & POLLIN) {
      for (;;) {
        UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) break;  // EAGAIN: all taken
        if (conns.size() >= kMaxConnections) {
          KLOG_WARN_RATELIMITED("API socket: %zu connections already; closing a new one",
                                kMaxConnections);
          continue;
        }
        auto c = std::make_unique<Connection>();
        c->fd = std::move(fd);
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c.get();
        conns.push_back(std::move(c));
      }
    }
  }
}

}  // namespace kindling::vmm::api
