// The API socket of `kindling run --api-sock` before InstanceStart (no KVM needed): the socket
// file's life (mode 0600, stale socket replaced, anything else refused, removed on exit) and
// what malformed or oversized requests get (400 with a fault_message; the server keeps
// answering).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "tests/support/background.h"
#include "tests/support/child_process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/temp_image.h"

namespace kindling {
namespace {

namespace fs = std::filesystem;
using Clock = test::Background::Clock;
constexpr std::chrono::seconds kDeadline{30};

sockaddr_un unix_addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Sends `request` as is and returns what comes back until the server closes or 5 s pass.
std::string raw_request(const std::string& sock, const std::string& request) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a = unix_addr(sock);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return "(connect)";
  timeval tv{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (::write(fd.get(), request.data(), request.size()) < 0) return "(write)";
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0) {
    got.append(buf, static_cast<size_t>(n));
    if (got.find("}") != std::string::npos) break;  // one JSON answer is enough
  }
  return got;
}

// Whether something accepts connections on `sock`.
bool accepts(const std::string& sock) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a = unix_addr(sock);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
}

class ApiSocketTest : public ::testing::Test {
 protected:
  // Starts kindling and waits for its socket.
  void start() {
    vm_.emplace(std::vector<std::string>{KINDLING_BIN, "run", "--api-sock", sock_}, out_);
    ASSERT_TRUE(vm_->started());
    const auto until = Clock::now() + kDeadline;
    // Connectable, not just present: a stale socket file may be there before kindling's.
    while (!accepts(sock_)) {
      ASSERT_FALSE(vm_->wait_until(Clock::now())) << test::read_file(out_).value_or("");
      ASSERT_LT(Clock::now(), until) << "no socket";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // curl --unix-socket: "BODY [STATUS]".
  std::string curl(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"/usr/bin/curl",   "-sS",           "-w",
                                     " [%{http_code}]", "--unix-socket", sock_};
    args.insert(args.end(), extra.begin(), extra.end());
    return test::run_child(args).out;
  }

  test::TempDir dir_;
  std::string sock_ = dir_.path() + "/api.sock";
  std::string out_ = dir_.path() + "/kindling.out";
  std::optional<test::Background> vm_;
};

TEST_F(ApiSocketTest, SocketIsPrivateAndRemovedOnExit) {
  start();
  EXPECT_EQ(fs::status(sock_).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_NE(curl({"http://localhost/"}).find("\"state\":\"Not started\""), std::string::npos);
  vm_->signal(SIGTERM);
  EXPECT_EQ(vm_->wait_until(Clock::now() + kDeadline), 143);
  EXPECT_FALSE(fs::exists(sock_));
}

TEST_F(ApiSocketTest, AnExistingFileIsRefusedNotDeleted) {
  { std::ofstream(sock_) << "precious"; }
  test::Background vm({KINDLING_BIN, "run", "--api-sock", sock_}, out_);
  EXPECT_EQ(vm.wait_until(Clock::now() + kDeadline), 2);
  EXPECT_EQ(test::read_file(sock_), "precious");
  EXPECT_NE(test::read_file(out_).value_or("").find("exists and is not a socket"),
            std::string::npos);
}

TEST_F(ApiSocketTest, AStaleSocketIsReplaced) {
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a = unix_addr(sock_);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  }  // closed: nobody accepts on it any more
  start();
  EXPECT_NE(curl({"http://localhost/version"}).find("[200]"), std::string::npos);
}

TEST_F(ApiSocketTest, ALiveSocketIsRefused) {
  start();
  test::Background second({KINDLING_BIN, "run", "--api-sock", sock_}, dir_.path() + "/2.out");
  EXPECT_EQ(second.wait_until(Clock::now() + kDeadline), 2);
  EXPECT_NE(curl({"http://localhost/"}).find("[200]"), std::string::npos);
}

// Each gets a 400 with a fault_message, and the server answers normally afterwards.
TEST_F(ApiSocketTest, MalformedAndOversizedRequestsGet400) {
  start();
  const std::string big(60000, 'a');
  struct Case {
    const char* name;
    std::string answer;
  } cases[] = {
      {"oversized body", curl({"-X", "PUT", "http://localhost/boot-source", "-d", big})},
      {"bad JSON", curl({"-X", "PUT", "http://localhost/boot-source", "-d", "{\"kernel"})},
      {"unknown field", curl({"-X", "PUT", "http://localhost/machine-config", "-d",
                              R"({"vcpu_count": 1, "mem_size_mib": 128, "gpu": true})"})},
      {"unknown path", curl({"http://localhost/network-interfaces/eth0"})},
      {"PATCH before start", curl({"-X", "PATCH", "http://localhost/drives/x", "-d",
                                   R"({"drive_id": "x", "path_on_host": "/y"})"})},
      {"garbage request line", raw_request(sock_, "NOT HTTP AT ALL\r\n\r\n")},
      {"huge header", raw_request(sock_, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                             std::string(20000, 'b') + "\r\n\r\n")},
      {"bad content length",
       raw_request(sock_,
                   "PUT /actions HTTP/1.1\r\nHost: x\r\nContent-Length: nonsense\r\n\r\n{}")},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(c.answer.find("[400]") != std::string::npos ||
                c.answer.find("HTTP/1.1 400") != std::string::npos)
        << c.name << ": " << c.answer.substr(0, 300);
    EXPECT_NE(c.answer.find("\"fault_message\""), std::string::npos)
        << c.name << ": " << c.answer.substr(0, 300);
  }
  EXPECT_NE(curl({"http://localhost/"}).find("\"state\":\"Not started\""), std::string::npos);
  EXPECT_FALSE(vm_->wait_until(Clock::now()));
}

// PUT /metrics, then a guest that writes 16 blocks: when the guest ends, kindling appends the
// final counters to the metrics file, as Firecracker does at exit.
TEST_F(ApiSocketTest, MetricsFileGetsTheFinalCountersAtExit) {
  std::string why;
  if (!test::kvm_usable(why)) GTEST_SKIP() << why;
  if (test::disk_temp_dir().empty()) GTEST_SKIP() << "no disk (non-tmpfs) directory for images";
  test::TempImage img(8ULL << 20);
  const std::string metrics = dir_.write("metrics.json", "");
  start();
  const nlohmann::json boot = {
      {"kernel_image_path", TESTGUEST_ELF},
      {"boot_args",
       "test=blk-bench blk.n=16 blk.bs=4096 blk.qd=4 blk.pattern=seq blk.op=write blk.seed=3"}};
  const nlohmann::json drive = {{"drive_id", "rootfs"},
                                {"path_on_host", img.path()},
                                {"is_root_device", true},
                                {"is_read_only", false}};
  for (const auto& [path, body] :
       {std::pair{"/boot-source", boot.dump()}, std::pair{"/drives/rootfs", drive.dump()},
        std::pair{"/metrics", nlohmann::json{{"metrics_path", metrics}}.dump()},
        std::pair{"/actions", std::string(R"({"action_type": "InstanceStart"})")}}) {
    const std::string answer =
        curl({"-X", "PUT", std::string("http://localhost") + path, "-d", body});
    ASSERT_NE(answer.find("[204]"), std::string::npos) << path << ": " << answer;
  }
  const auto status = vm_->wait_until(Clock::now() + kDeadline);
  ASSERT_TRUE(status) << "the guest did not end; output: " << test::read_file(out_).value_or("");
  EXPECT_EQ(*status, 0) << test::read_file(out_).value_or("");
  std::ifstream in(metrics);
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << "no metrics line at exit";
  const nlohmann::json m = nlohmann::json::parse(line);
  EXPECT_EQ(m["block_rootfs"]["write_count"], 16);
  EXPECT_EQ(m["block_rootfs"]["write_bytes"], 16 * 4096);
  EXPECT_EQ(m["block"]["write_count"], 16);
  EXPECT_FALSE(std::getline(in, line)) << "one line: there was no FlushMetrics";
}

}  // namespace
}  // namespace kindling
