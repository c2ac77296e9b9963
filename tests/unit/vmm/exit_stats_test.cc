#include <gtest/gtest.h>

#include <string>

#include "vmm/exit_loop.h"

namespace kindling::vmm {
namespace {

TEST(ExitStatsTest, MergeAddsCountsAndTimes) {
  ExitStats a, b;
  a.pio = 2;
  a.pio_ns = 4000;
  a.run_ns = 1'000'000'000;
  a.assisted[static_cast<size_t>(AssistKind::kClac)] = 3;
  b.pio = 1;
  b.pio_ns = 2000;
  b.run_ns = 500'000'000;
  b.internal_error = 4;
  b.assist_ns = 40'000;
  b.assisted[static_cast<size_t>(AssistKind::kClac)] = 1;
  b.assisted[static_cast<size_t>(AssistKind::kSyscallRepair)] = 3;
  a.merge(b);
  EXPECT_EQ(a.pio, 3u);
  EXPECT_EQ(a.pio_ns, 6000u);
  EXPECT_EQ(a.run_ns, 1'500'000'000u);
  EXPECT_EQ(a.assist_ns, 40'000u);
  EXPECT_EQ(a.assisted[static_cast<size_t>(AssistKind::kClac)], 4u);
  EXPECT_EQ(a.assisted[static_cast<size_t>(AssistKind::kSyscallRepair)], 3u);
}

TEST(ExitStatsTest, SummaryNamesKindsAndCostPerExit) {
  ExitStats s;
  s.pio = 3;
  s.pio_ns = 6000;
  s.internal_error = 4;
  s.assist_ns = 40'000;
  s.run_ns = 1'500'000'000;
  s.assisted[static_cast<size_t>(AssistKind::kSyscallRepair)] = 4;
  const std::string line = s.summary();
  EXPECT_NE(line.find("pio=3 "), std::string::npos) << line;
  EXPECT_NE(line.find("assist[syscall-repair]=4"), std::string::npos) << line;
  EXPECT_NE(line.find("run=1.500s"), std::string::npos) << line;
  EXPECT_NE(line.find("pio=0.0ms(2.0us/exit)"), std::string::npos) << line;
  EXPECT_NE(line.find("assist=0.0ms(10.0us/exit)"), std::string::npos) << line;
  EXPECT_EQ(line.find("mmio=0.0ms"), std::string::npos) << line;  // no mmio exits: no time
}

}  // namespace
}  // namespace kindling::vmm
