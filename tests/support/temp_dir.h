// A temporary folder for tests that need files on disk (config files, JSON VM descriptions),
// removed with everything in it.
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace kindling::test {

// A fresh folder under the system temp directory; removed recursively on destruction.
class TempDir {
 public:
  // Creates the folder. Aborts when it cannot: no test can go on without it.
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kindling-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "TempDir: mkdtemp %s: %s\n", tmpl.c_str(), std::strerror(errno));
      std::abort();
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The folder's absolute path.
  const std::string& path() const { return path_; }
  // Writes `text` to path()/name (creating folders) and returns the full path.
  std::string write(const std::string& name, const std::string& text) const {
    std::filesystem::path p = std::filesystem::path(path_) / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  std::string path_;
};

}  // namespace kindling::test
