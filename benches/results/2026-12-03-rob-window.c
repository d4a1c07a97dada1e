// How many independent cache misses overlap when each one is followed by
// a locked compare-and-swap and N other instructions (the "window" the
// out-of-order core can look ahead is ~224 micro-ops on Zen 2).
// Each iteration: xorshift -> random line of a 32 MB table (past the 16 MB
// L3) -> load -> lock cmpxchg -> PAD x 10 independent adds.
// Build and run: for p in 0 2 4 6 8 10 12 14; do gcc -O2 -DPAD=$p rob_window.c -o rob && ./rob; done
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#define ADD10 "add $1,%%r8\n add $1,%%r9\n add $1,%%r10\n add $1,%%r11\n add $1,%%r8\n add $1,%%r9\n add $1,%%r10\n add $1,%%r11\n add $1,%%r8\n add $1,%%r9\n"
#define R0 ""
#define R2 ADD10 ADD10
#define R4 R2 R2
#define R6 R4 R2
#define R8 R4 R4
#define R10 R8 R2
#define R12 R8 R4
#define R14 R12 R2
#define CAT(a, b) a##b
#define PADS(n) CAT(R, n)
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
    size_t bytes = (size_t)32 << 20, lines = bytes / 64;
    int huge = argc > 1 && argv[1][0] == 'h';
    uint64_t *p = mmap(0, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);
    for (size_t i = 0; i < bytes / 8; i++) p[i] = 0;
    uint64_t s = 88172645463325252ull, iters = 10000000;
    double best = 1e18;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (uint64_t i = 0; i < iters; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            uint64_t *q = &p[(s & (lines - 1)) * 8];
            uint64_t v = __atomic_load_n(q, __ATOMIC_ACQUIRE);
            __atomic_compare_exchange_n(q, &v, v + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
            __asm__ volatile(PADS(PAD) ::: "r8", "r9", "r10", "r11");
        }
        double ns = (now() - t0) / iters;
        if (ns < best) best = ns;
    }
    printf("pad %3d instructions, %s pages: %.1f ns per load+CAS (best of 5)\n", PAD * 10, huge ? "2 MB" : "4 KB", best);
    return 0;
}
