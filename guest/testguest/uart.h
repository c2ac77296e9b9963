/* COM1 (8250/16550 at 0x3F8, IRQ 4): polled output for printf, and the THR-empty interrupt
 * the `uartirq` test uses. */
#pragma once

#include <stdint.h>

#define COM1_BASE 0x3F8
#define COM1_IRQ 4

/* 115200 8N1, FIFOs on, interrupts off. */
void uart_init(void);
/* Writes one character ("\n" becomes "\r\n"); waits (bounded) for the transmitter. */
void uart_putc(char c);
void uart_puts(const char* s);
/* Sets the interrupt-enable register (UART_IER_* bits). */
void uart_set_ier(uint8_t ier);
/* Reads the interrupt-identification register (acknowledges a THR-empty interrupt). */
uint8_t uart_read_iir(void);
