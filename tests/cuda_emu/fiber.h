/* fiber.h (tests/cuda_emu): the context switch the emulated device runs a block's threads with
 * (fiber_x86_64.S; x86-64 System V only). */
#ifndef NDL_EMU_FIBER_H
#define NDL_EMU_FIBER_H

#ifdef __cplusplus
extern "C" {
#endif

/* Save the running context's stack pointer in *save and resume the one whose stack pointer is to. */
void ndl_emu_fiber_switch(void **save, void *to);
/* The stack pointer of a new fiber on the stack ending at top (16-byte aligned): switching to it
 * calls ndl_emu_fiber_main(), which must never return. */
void *ndl_emu_fiber_stack(char *top);
/* Defined by the runtime (cuda_emu.cc): a fiber's body. */
void ndl_emu_fiber_main(void);

#ifdef __cplusplus
}
#endif
#endif
