// gtest's EXPECT_EQ takes its arguments by reference; a field of a packed on-wire struct may
// sit at a misaligned address, and binding a reference to it is undefined behaviour (UBSan in
// `make sanitize` stops there). unpacked(s.field) hands gtest an aligned copy instead.
#pragma once

namespace kindling {

// A copy of `v` (a packed struct's field, read by value).
template <typename T>
constexpr T unpacked(T v) {
  return v;
}

}  // namespace kindling
