#include "ring3.h"

#include "heap.h"
#include "idt.h"
#include "io.h"
#include "libc.h"
#include "platform.h"

/* Selectors, as Linux lays them out: STAR[47:32] = kernel CS (SS = CS + 8), STAR[63:48] =
 * the 32-bit user CS, from which SYSRET takes user SS (+ 8) and the 64-bit user CS (+ 16). */
#define SEL_KERNEL_CS 0x10
#define SEL_USER32_CS 0x20
#define SEL_USER_SS 0x2b
#define SEL_USER_CS 0x33
#define SEL_TSS 0x38

/* MSRs (Intel SDM vol. 4) and EFER bits: SYSCALL enable, no-execute enable. */
#define MSR_EFER 0xC0000080
#define MSR_STAR 0xC0000081
#define MSR_LSTAR 0xC0000082
#define MSR_FMASK 0xC0000084
#define EFER_SCE (1u << 0)
#define EFER_NXE (1u << 11)
/* Linux's FMASK: TF DF IF IOPL AC NT. */
#define FMASK_LINUX 0x47700

/* Page-table entry bits: present, writable, user, 2 MiB page. */
#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_US 0x4ull
#define PTE_PS 0x80ull
#define PAGE_2M 0x200000ull

#define VEC_PF 14

/* Intel SDM vol. 3A 8.7: the 64-bit TSS. */
struct tss64 {
  uint32_t reserved0;
  uint64_t rsp[3];
  uint64_t reserved1;
  uint64_t ist[7];
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t iopb;
} __attribute__((packed));

struct descriptor_ptr {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

extern void ring3_enter(uint64_t rip, uint64_t rsp, uint64_t rdi) __attribute__((noreturn));
extern const char ring3_lstar[], ring3_pf_entry[];
extern const char ring3_user_code[], ring3_user_syscall[], ring3_user_forge[];
extern const char ring3_user_code_end[];
void ring3_syscall_entered(uint64_t rcx, uint64_t r11) __attribute__((noreturn));

static uint64_t gdt[9] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
static uint8_t kernel_stack[8192] __attribute__((aligned(16)));
static int forging;

static void wrmsr(uint32_t msr, uint64_t v) {
  __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static uint64_t rdmsr(uint32_t msr) {
  uint32_t lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((uint64_t)hi << 32) | lo;
}

static int cpu_has_smap(void) {
  uint32_t a = 7, b, c = 0, d;
  __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
  return (b >> 20) & 1;
}

/* Kernel and user segments (kindling's code32/code64/data kept at 0x08-0x18) and the TSS. */
static void load_gdt_and_tss(void) {
  gdt[1] = 0x00cf9a000000ffffull; /* 0x08: 32-bit kernel code */
  gdt[2] = 0x00af9a000000ffffull; /* 0x10: 64-bit kernel code */
  gdt[3] = 0x00cf92000000ffffull; /* 0x18: kernel data */
  gdt[4] = 0x00cffa000000ffffull; /* 0x20: 32-bit user code */
  gdt[5] = 0x00cff2000000ffffull; /* 0x28: user data */
  gdt[6] = 0x00affa000000ffffull; /* 0x30: 64-bit user code */
  uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof(tss) - 1;
  gdt[7] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) | ((limit >> 16) << 48) |
           (((base >> 24) & 0xff) << 56); /* 0x38: available TSS */
  gdt[8] = base >> 32;
  tss.rsp[0] = (uint64_t)(uintptr_t)(kernel_stack + sizeof(kernel_stack));
  tss.iopb = sizeof(tss);
  struct descriptor_ptr p = {sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt};
  __asm__ volatile("lgdt %0" : : "m"(p));
  __asm__ volatile("ltr %w0" : : "r"((uint16_t)SEL_TSS));
}

/* The first GiB identity-mapped with supervisor 2 MiB pages, except one user page, returned. */
static uint64_t load_page_tables(void) {
  uint64_t* pml4 = heap_alloc(4096, 4096);
  uint64_t* pdpt = heap_alloc(4096, 4096);
  uint64_t* pd = heap_alloc(4096, 4096);
  uint8_t* user = heap_alloc(PAGE_2M, PAGE_2M);
  if (!pml4 || !pdpt || !pd || !user || (uint64_t)(uintptr_t)user >= 512 * PAGE_2M) return 0;
  memset(pml4, 0, 4096);
  memset(pdpt, 0, 4096);
  /* U/S is the AND of every level: the upper levels allow it, each PD entry decides. */
  pml4[0] = (uint64_t)(uintptr_t)pdpt | PTE_P | PTE_RW | PTE_US;
  pdpt[0] = (uint64_t)(uintptr_t)pd | PTE_P | PTE_RW | PTE_US;
  for (uint64_t i = 0; i < 512; ++i) pd[i] = i * PAGE_2M | PTE_P | PTE_RW | PTE_PS;
  pd[(uint64_t)(uintptr_t)user / PAGE_2M] |= PTE_US;
  __asm__ volatile("mov %0, %%cr3" : : "r"((uint64_t)(uintptr_t)pml4) : "memory");
  return (uint64_t)(uintptr_t)user;
}

static void page_fault_handler(struct irq_frame* f) {
  uint64_t cr2;
  __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
  int at_lstar = f->rip == (uint64_t)(uintptr_t)ring3_lstar && (f->cs & 3) == 3;
  printf(
      "testguest: %s: #PF error %lx at rip %lx cs %lx ss %lx rflags %lx cr2 %lx "
      "(rcx %lx r11 %lx)\n",
      forging ? "syscall-forge" : "syscall", (unsigned long)f->error_code, (unsigned long)f->rip,
      (unsigned long)f->cs, (unsigned long)f->ss, (unsigned long)f->rflags, (unsigned long)cr2,
      (unsigned long)f->rcx, (unsigned long)f->r11);
  if (forging && at_lstar) {
    printf("testguest: syscall-forge: ordinary page fault at LSTAR from ring 3\n");
    platform_exit(TG_PASS);
  }
  printf("testguest: %s: unexpected page fault\n", forging ? "syscall-forge" : "syscall");
  platform_exit(TG_FAIL);
}

void ring3_syscall_entered(uint64_t rcx, uint64_t r11) {
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  printf("testguest: %s: at LSTAR in ring %u (cs %x, rcx %lx, r11 %lx)\n",
         forging ? "syscall-forge" : "syscall", cs & 3u, cs, (unsigned long)rcx,
         (unsigned long)r11);
  if (forging) {
    printf("testguest: syscall-forge: a user jump reached ring 0\n");
    platform_exit(TG_FAIL);
  }
  platform_exit((cs & 3) == 0 ? TG_PASS : TG_FAIL);
}

/* Sets up ring 3 and runs `entry` (an offset into the user code) there; never returns. */
static int run_in_ring3(const char* entry) {
  uint64_t user = load_page_tables();
  if (!user) {
    printf("testguest: ring3: no 2 MiB for the user page\n");
    return TG_FAIL;
  }
  load_gdt_and_tss();
  wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE | EFER_NXE);
  wrmsr(MSR_STAR, ((uint64_t)SEL_USER32_CS << 48) | ((uint64_t)SEL_KERNEL_CS << 32));
  wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)ring3_lstar);
  wrmsr(MSR_FMASK, FMASK_LINUX);
  /* With SMAP the #PF entry starts with clac, as Linux's does; without, clac would be #UD. */
  idt_set_gate(VEC_PF, cpu_has_smap() ? ring3_pf_entry : 0);
  idt_set_handler(VEC_PF, page_fault_handler);
  memcpy((void*)(uintptr_t)user, ring3_user_code, (size_t)(ring3_user_code_end - ring3_user_code));
  ring3_enter(user + (uint64_t)(entry - ring3_user_code), user + PAGE_2M - 64,
              (uint64_t)(uintptr_t)ring3_lstar);
}

int ring3_syscall(struct tg_context* ctx) {
  (void)ctx;
  forging = 0;
  return run_in_ring3(ring3_user_syscall);
}

int ring3_forged_syscall(struct tg_context* ctx) {
  (void)ctx;
  forging = 1;
  return run_in_ring3(ring3_user_forge);
}
