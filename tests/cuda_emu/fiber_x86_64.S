/* fiber_x86_64.S (tests/cuda_emu): fibers for the emulated device's kernel threads. A switch saves
 * the callee-saved registers (System V x86-64) on the old stack, swaps stack pointers, restores
 * them from the new one. A new fiber's stack holds six zero registers, then ndl_emu_fiber_main as
 * the return address, then a zero word, so ndl_emu_fiber_main starts with the alignment a call
 * gives. (The FPU control words are not saved: kernels do not change them.) */
#if !defined(__x86_64__)
#error "tests/cuda_emu: fibers are written for x86-64 only"
#endif
        .text
        .globl  ndl_emu_fiber_switch
        .type   ndl_emu_fiber_switch, @function
/* void ndl_emu_fiber_switch(void **save: rdi, void *to: rsi) */
ndl_emu_fiber_switch:
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .size   ndl_emu_fiber_switch, .-ndl_emu_fiber_switch

        .globl  ndl_emu_fiber_stack
        .type   ndl_emu_fiber_stack, @function
/* void *ndl_emu_fiber_stack(char *top: rdi, 16-byte aligned) */
ndl_emu_fiber_stack:
        andq    $-16, %rdi
        movq    $0, -8(%rdi)
        movq    ndl_emu_fiber_main@GOTPCREL(%rip), %rax
        movq    %rax, -16(%rdi)
        leaq    -64(%rdi), %rax
        movq    $0, 0(%rax)
        movq    $0, 8(%rax)
        movq    $0, 16(%rax)
        movq    $0, 24(%rax)
        movq    $0, 32(%rax)
        movq    $0, 40(%rax)
        ret
        .size   ndl_emu_fiber_stack, .-ndl_emu_fiber_stack

        .section .note.GNU-stack,"",@progbits
