// The allow-list of each thread kind, as data: which syscalls, and for ioctl which request
// numbers. install() (seccomp.h) turns one into a filter; tests read them too.
#pragma once

#include <vector>

#include "common/seccomp/seccomp.h"

namespace kindling::seccomp {

// One allowed syscall. For ioctl, `requests` lists the request numbers allowed (the second
// argument); every rule for ioctl names its requests.
struct Rule {
  long nr;
  std::vector<unsigned long> requests;
};

// Every rule of `kind`, in the order of the tables in allow_lists.cc (a syscall may appear in
// several groups; ioctl rules add up).
std::vector<Rule> allow_list(ThreadKind kind);

// Whether this build carries a sanitizer runtime (ASan/UBSan/LSan): the lists then also allow
// what the runtime needs to print a report and run the leak check at exit.
bool sanitizer_build();

}  // namespace kindling::seccomp
