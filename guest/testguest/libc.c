#include "libc.h"

#include <stdbool.h>

#include "uart.h"

void* memcpy(void* dst, const void* src, size_t n) {
  uint8_t* d = dst;
  const uint8_t* s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void* memset(void* dst, int c, size_t n) {
  uint8_t* d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
  const uint8_t* x = a;
  const uint8_t* y = b;
  for (; n; --n, ++x, ++y) {
    if (*x != *y) return *x < *y ? -1 : 1;
  }
  return 0;
}

size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

int strcmp(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return (uint8_t)*a - (uint8_t)*b;
}

static void put_unsigned(unsigned long long v, unsigned base, int width, char pad) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  while (width-- > n) uart_putc(pad);
  while (n) uart_putc(buf[--n]);
}

int vprintf(const char* fmt, va_list ap) {
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      uart_putc(*fmt);
      continue;
    }
    ++fmt;
    char pad = ' ';
    int width = 0;
    if (*fmt == '0') pad = '0';
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    int longs = 0;
    while (*fmt == 'l') ++longs, ++fmt;
    switch (*fmt) {
      case 'd': {
        long long v = longs ? va_arg(ap, long long) : va_arg(ap, int);
        if (v < 0) uart_putc('-');
        put_unsigned(v < 0 ? -(unsigned long long)v : (unsigned long long)v, 10, width, pad);
        break;
      }
      case 'u':
        put_unsigned(longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 10, width, pad);
        break;
      case 'x':
        put_unsigned(longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned), 16, width, pad);
        break;
      case 'p':
        uart_puts("0x");
        put_unsigned((uintptr_t)va_arg(ap, void*), 16, width, pad);
        break;
      case 'c':
        uart_putc((char)va_arg(ap, int));
        break;
      case 's': {
        const char* s = va_arg(ap, const char*);
        uart_puts(s ? s : "(null)");
        break;
      }
      case '%':
        uart_putc('%');
        break;
      default:
        return -1;
    }
  }
  return 0;
}

int printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vprintf(fmt, ap);
  va_end(ap);
  return r;
}

int cmdline_get(const char* cmdline, const char* key, char* buf, size_t len) {
  size_t klen = strlen(key);
  const char* p = cmdline;
  while (p && *p) {
    while (*p == ' ') ++p;
    bool match = memcmp(p, key, klen) == 0 && p[klen] == '=';
    if (match) {
      p += klen + 1;
      size_t n = 0;
      while (p[n] && p[n] != ' ' && n + 1 < len) {
        buf[n] = p[n];
        ++n;
      }
      buf[n] = '\0';
      return 0;
    }
    while (*p && *p != ' ') ++p;
  }
  return -1;
}

long parse_ulong(const char* s) {
  if (!*s) return -1;
  long v = 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9' || v > 100000000) return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}
