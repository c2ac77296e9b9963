#include "uart.h"

#include <linux/serial_reg.h>

#include "io.h"

/* Divisor for 115200 baud from the 1.8432 MHz clock. */
#define UART_DIVISOR_115200 1
/* Enough polls for a real 16550 to drain one character; a missing UART must not hang us. */
#define UART_TX_SPINS 100000

void uart_init(void) {
  outb(COM1_BASE + UART_IER, 0);
  outb(COM1_BASE + UART_LCR, UART_LCR_DLAB);
  outb(COM1_BASE + UART_DLL, UART_DIVISOR_115200);
  outb(COM1_BASE + UART_DLM, 0);
  outb(COM1_BASE + UART_LCR, UART_LCR_WLEN8);
  outb(COM1_BASE + UART_FCR, UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT);
  /* OUT2 gates the IRQ line on PC hardware. */
  outb(COM1_BASE + UART_MCR, UART_MCR_DTR | UART_MCR_RTS | UART_MCR_OUT2);
}

static void uart_tx(uint8_t c) {
  for (int i = 0; i < UART_TX_SPINS; ++i) {
    if (inb(COM1_BASE + UART_LSR) & UART_LSR_THRE) break;
  }
  outb(COM1_BASE + UART_TX, c);
}

void uart_putc(char c) {
  if (c == '\n') uart_tx('\r');
  uart_tx((uint8_t)c);
}

void uart_puts(const char* s) {
  while (*s) uart_putc(*s++);
}

void uart_set_ier(uint8_t ier) {
  outb(COM1_BASE + UART_IER, ier);
}

uint8_t uart_read_iir(void) {
  return inb(COM1_BASE + UART_IIR);
}
