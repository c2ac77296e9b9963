/* The little libc the test guest needs: memory/string helpers and a printf for the UART. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void* memcpy(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
int strcmp(const char* a, const char* b);

/* printf to COM1 supporting %s %c %d %u %x %p %% with l/ll and a 0-padded width. */
int printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char* fmt, va_list ap);

/* Copies the value of `key=` from a kernel command line into buf (NUL-terminated);
 * returns 0 when found, -1 otherwise. */
int cmdline_get(const char* cmdline, const char* key, char* buf, size_t len);
/* Parses a decimal number; returns -1 on anything else. */
long parse_ulong(const char* s);
