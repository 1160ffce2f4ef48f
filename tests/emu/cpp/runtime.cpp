// runtime.cpp: the CUDA emulator's execution model (tests only).
//
// - Launch: blocks run one after another on the calling OS thread, in grid
//   order (x fastest). All emulator calls are serialised by one mutex, so
//   `__shared__` statics and the scheduler state are never shared between
//   test threads.
// - Threads: each thread of a block is a fiber (own 128 KiB stack with a
//   guard page). The scheduler runs every ready fiber in linear thread order
//   (or reversed: the second run of every parity test, so a result that
//   depends on the order threads run between two barriers shows up as a
//   difference between the runs). A fiber runs until it exits, reaches
//   `__syncthreads()` (released when every thread of the block waits at the
//   same barrier; a thread that exited before it, or threads waiting at
//   different barriers, fail the launch) or a warp-collective MMA
//   (released when all 32 lanes of its warp wait there).
// - Memory: device buffers are mmap'ed with a PROT_NONE page on each side,
//   the data flush against one of them (the end or the start, chosen per
//   buffer); the bytes between the data and the other guard page are
//   0xFF (NaN) and must still be 0xFF after the launch. A fault in a
//   kernel (guard page, any other SIGSEGV/SIGBUS/SIGFPE/SIGILL) stops the
//   launch with a message naming the kernel, block, thread, buffer and
//   offset; the test gets it as an error instead of a crash.
// - `__shared__` memory is filled with 0xFF before every block; indexing a
//   fixed-size array (shared or local) out of its bounds traps
//   (-fsanitize=bounds without a runtime), reported like a fault.

#include "cuda_emu.h"
#include "register.h"

#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace rawgraph_emu {
uint3 thread_idx, block_idx, block_dim, grid_dim;
}

extern "C" char __start_rawgraph_emu_shared[] __attribute__((weak));
extern "C" char __stop_rawgraph_emu_shared[] __attribute__((weak));

namespace {

using rawgraph_emu::KernelEntry;

// ---------------------------------------------------------------- contexts

#if defined(__x86_64__)
// Callee-saved registers are pushed on the old stack, the stack pointer is
// swapped, and they are popped from the new one (SysV x86-64 ABI).
extern "C" void rawgraph_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .globl rawgraph_emu_switch
    .hidden rawgraph_emu_switch
    .type rawgraph_emu_switch,@function
rawgraph_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size rawgraph_emu_switch,.-rawgraph_emu_switch
)");

struct Ctx {
    void* sp = nullptr;
};

void ctx_init(Ctx& c, char* stack, size_t size, void (*entry)()) {
    uintptr_t top = ((uintptr_t)(stack + size)) & ~(uintptr_t)15;
    void** sp = (void**)top;
    *--sp = nullptr;            // fake return address of `entry` (never returns)
    *--sp = (void*)entry;       // popped by `ret`
    for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp rbx r12 r13 r14 r15
    c.sp = sp;
}

inline void ctx_switch(Ctx& from, Ctx& to) { rawgraph_emu_switch(&from.sp, to.sp); }
#else
struct Ctx {
    ucontext_t uc;
};

void ctx_init(Ctx& c, char* stack, size_t size, void (*entry)()) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}

inline void ctx_switch(Ctx& from, Ctx& to) { swapcontext(&from.uc, &to.uc); }
#endif

// ---------------------------------------------------------------- state

enum State { READY, WAIT_BLOCK, WAIT_WARP, DONE };

struct Fiber {
    Ctx ctx;
    uint3 tid;
    State state = READY;
    const char* file = nullptr;
    int line = 0;
    unsigned mma_seq = 0;
};

constexpr size_t STACK_BYTES = 128 * 1024;
constexpr unsigned MAX_THREADS = 1024;

struct Alloc {
    char* map;
    size_t map_len;
    char* data;
    size_t bytes;
    int id;
};

struct Runtime {
    std::mutex mutex;
    size_t page = 4096;
    std::vector<Alloc> allocs;
    int next_id = 1;
    std::vector<char*> stacks;  // each STACK_BYTES + one guard page
    std::vector<Fiber> fibers;
    Ctx sched;
    int cur = -1;
    const KernelEntry* kernel = nullptr;
    void** args = nullptr;
    std::string error;
};

Runtime& rt() {
    static Runtime r;
    return r;
}

// Fault state, read by the signal handler (which runs on the launching
// thread while it holds the mutex).
sigjmp_buf g_jmp;
volatile sig_atomic_t g_in_fiber = 0;
char g_fault[1024];
struct sigaction g_old[65];

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

std::string where_block() {
    Runtime& r = rt();
    using rawgraph_emu::block_idx;
    return fmt("%s/%s block (%u,%u,%u)", r.kernel ? r.kernel->file : "?", r.kernel ? r.kernel->name : "?",
               block_idx.x, block_idx.y, block_idx.z);
}

std::string where() {
    Runtime& r = rt();
    using rawgraph_emu::block_idx;
    using rawgraph_emu::thread_idx;
    return fmt("%s/%s block (%u,%u,%u) thread (%u,%u,%u)", r.kernel ? r.kernel->file : "?",
               r.kernel ? r.kernel->name : "?", block_idx.x, block_idx.y, block_idx.z,
               thread_idx.x, thread_idx.y, thread_idx.z);
}

// Describes address `a` relative to the buffers and fiber stacks.
std::string describe_addr(const char* a) {
    Runtime& r = rt();
    for (const Alloc& b : r.allocs) {
        if (a >= b.map && a < b.map + b.map_len) {
            long long off = (long long)(a - b.data);
            const char* rel = off < 0 ? "before the start of" : (off >= (long long)b.bytes ? "past the end of" : "inside");
            return fmt("byte offset %lld, %s buffer #%d (%zu bytes)", off, rel, b.id, b.bytes);
        }
    }
    for (size_t i = 0; i < r.stacks.size(); ++i) {
        if (a >= r.stacks[i] && a < r.stacks[i] + r.page) return "the guard page of a thread stack (stack overflow)";
    }
    return fmt("address %p (no emulator buffer)", (const void*)a);
}

void on_fault(int sig, siginfo_t* si, void* uc) {
    if (g_in_fiber) {
        g_in_fiber = 0;
        const char* kind = "";
#if defined(__x86_64__) && defined(REG_ERR)
        if (sig == SIGSEGV) {
            auto* u = (ucontext_t*)uc;
            kind = (u->uc_mcontext.gregs[REG_ERR] & 2) ? "write: " : "read: ";
        }
#endif
        std::string w = where();
        std::string d = sig == SIGILL ? "a trap: an index outside a fixed-size array (__shared__ or local; "
                                        "kernels are compiled with -fsanitize=bounds)"
                                      : describe_addr((const char*)si->si_addr);
        snprintf(g_fault, sizeof g_fault, "%s: %s at %s: %s%s", w.c_str(), strsignal(sig),
                 sig == SIGSEGV || sig == SIGBUS ? "memory access" : "instruction", kind, d.c_str());
        siglongjmp(g_jmp, 1);
    }
    struct sigaction& o = g_old[sig];
    if (o.sa_flags & SA_SIGINFO) {
        if (o.sa_sigaction) {
            o.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (o.sa_handler != SIG_DFL && o.sa_handler != SIG_IGN) {
        o.sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);  // re-executing the instruction now takes the default action
}

void install_handlers() {
    static bool done = false;
    if (done) return;
    done = true;
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(sig, &sa, &g_old[sig]);
    }
}

// ---------------------------------------------------------------- fibers

void fiber_main() {
    Runtime& r = rt();
    r.kernel->call(r.args);
    Fiber& me = r.fibers[r.cur];
    me.state = DONE;
    ctx_switch(me.ctx, r.sched);
    __builtin_unreachable();
}

// Suspends the current fiber in state `s` at `file`:`line`.
void suspend(State s, const char* file, int line) {
    Runtime& r = rt();
    Fiber& me = r.fibers[r.cur];
    me.state = s;
    me.file = file;
    me.line = line;
    ctx_switch(me.ctx, r.sched);
}

void ensure_stacks(size_t n) {
    Runtime& r = rt();
    while (r.stacks.size() < n) {
        size_t len = STACK_BYTES + r.page;
        void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            r.error = "cannot map a thread stack";
            return;
        }
        mprotect(m, r.page, PROT_NONE);
        r.stacks.push_back((char*)m);
    }
}

std::string site(const Fiber& f) {
    return fmt("thread (%u,%u,%u) at %s:%d", f.tid.x, f.tid.y, f.tid.z, f.file ? f.file : "?", f.line);
}

// Runs one block to completion; false (with r.error set) on failure.
bool run_block(bool reverse) {
    Runtime& r = rt();
    using rawgraph_emu::block_dim;
    const unsigned n = block_dim.x * block_dim.y * block_dim.z;
    if (__start_rawgraph_emu_shared && __stop_rawgraph_emu_shared)
        memset(__start_rawgraph_emu_shared, 0xFF, (size_t)(__stop_rawgraph_emu_shared - __start_rawgraph_emu_shared));
    r.fibers.assign(n, Fiber{});
    for (unsigned i = 0; i < n; ++i) {
        Fiber& f = r.fibers[i];
        f.tid = {i % block_dim.x, (i / block_dim.x) % block_dim.y, i / (block_dim.x * block_dim.y)};
        ctx_init(f.ctx, r.stacks[i] + r.page, STACK_BYTES, fiber_main);
    }
    for (;;) {
        for (unsigned k = 0; k < n; ++k) {
            unsigned i = reverse ? n - 1 - k : k;
            if (r.fibers[i].state != READY) continue;
            r.cur = (int)i;
            rawgraph_emu::thread_idx = r.fibers[i].tid;
            g_in_fiber = 1;
            ctx_switch(r.sched, r.fibers[i].ctx);
            g_in_fiber = 0;
            if (!r.error.empty()) return false;
        }
        unsigned done = 0;
        for (const Fiber& f : r.fibers) done += f.state == DONE;
        if (done == n) return true;
        // Warp collectives: every lane of the warp waiting at the same one.
        bool released = false;
        for (unsigned w0 = 0; w0 < n; w0 += 32) {
            unsigned w1 = w0 + 32 < n ? w0 + 32 : n, waiting = 0;
            for (unsigned i = w0; i < w1; ++i) waiting += r.fibers[i].state == WAIT_WARP;
            if (waiting == 0) continue;
            for (unsigned i = w0; i < w1; ++i) {
                const Fiber& f = r.fibers[i];
                if (f.state != WAIT_WARP || f.file != r.fibers[w0].file || f.line != r.fibers[w0].line || w1 - w0 != 32) {
                    r.error = where_block() + ": warp-collective not reached by all 32 lanes of warp " +
                              std::to_string(w0 / 32) + ": " + site(r.fibers[w0]) + " vs " + site(f) +
                              (f.state == DONE ? " (exited)" : "");
                    return false;
                }
            }
            for (unsigned i = w0; i < w1; ++i) r.fibers[i].state = READY;
            released = true;
        }
        if (released) continue;
        // Block barrier: every thread waiting at the same __syncthreads.
        const Fiber* first = nullptr;
        for (const Fiber& f : r.fibers) {
            if (f.state == WAIT_BLOCK) {
                first = &f;
                break;
            }
        }
        for (const Fiber& f : r.fibers) {
            if (f.state == DONE) {
                r.error = fmt("%s: __syncthreads() at %s:%d is waited on while thread (%u,%u,%u) has exited "
                              "(barrier in divergent code)",
                              where_block().c_str(), first->file, first->line, f.tid.x, f.tid.y, f.tid.z);
                return false;
            }
            if (f.file != first->file || f.line != first->line) {
                r.error = where_block() + ": divergent __syncthreads(): " + site(*first) + ", " + site(f);
                return false;
            }
        }
        for (Fiber& f : r.fibers) f.state = READY;
    }
}

bool check_canaries(std::string& err) {
    Runtime& r = rt();
    for (const Alloc& b : r.allocs) {
        char* lo = b.map + r.page;
        char* hi = b.map + b.map_len - r.page;
        for (char* p = lo; p < hi; ++p) {
            if (p == b.data) p += b.bytes;
            if (p >= hi) break;
            if ((unsigned char)*p != 0xFF) {
                err = fmt("%s/%s wrote out of bounds: byte offset %lld of buffer #%d (%zu bytes) changed",
                          r.kernel->file, r.kernel->name, (long long)(p - b.data), b.id, b.bytes);
                // Reported to this launch only: restore the canaries, or a launch
                // on another test thread (this scan covers every live buffer)
                // would report the same bytes again before the buffer is freed.
                memset(lo, 0xFF, (size_t)(b.data - lo));
                memset(b.data + b.bytes, 0xFF, (size_t)(hi - (b.data + b.bytes)));
                return false;
            }
        }
    }
    return true;
}

}  // namespace

// ---------------------------------------------------------------- device API

namespace rawgraph_emu {

void syncthreads(const char* file, int line) { suspend(WAIT_BLOCK, file, line); }

void trap(const char* file, int line, const char* what) {
    Runtime& r = rt();
    r.error = where() + ": " + what + " at " + file + ":" + std::to_string(line);
    Fiber& me = r.fibers[r.cur];
    me.state = DONE;
    ctx_switch(me.ctx, r.sched);
    __builtin_unreachable();
}

float h16_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        bits = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        bits = sign;
    } else {  // subnormal: m * 2^-24, exact in f32
        float f = (float)m * 5.9604644775390625e-8f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// Round to nearest even (F. Giesen's float_to_half_fast3_rtne).
unsigned short f32_to_h16(float ff) {
    uint32_t f;
    memcpy(&f, &ff, 4);
    const uint32_t f32infty = 255u << 23, f16max = (127u + 16) << 23;
    const uint32_t denorm_magic = ((127u - 15) + (23 - 10) + 1) << 23;
    uint32_t sign = f & 0x80000000u;
    f ^= sign;
    uint32_t o;
    if (f >= f16max) {
        o = f > f32infty ? 0x7fff : 0x7c00;  // NaN as cvt.rn.f16.f32 (canonical), or inf
    } else if (f < (113u << 23)) {
        float a, b;
        memcpy(&a, &f, 4);
        memcpy(&b, &denorm_magic, 4);
        float s = a + b;
        uint32_t sb;
        memcpy(&sb, &s, 4);
        o = sb - denorm_magic;
    } else {
        uint32_t odd = (f >> 13) & 1;
        f += ((uint32_t)(15 - 127) << 23) + 0xfff;
        f += odd;
        o = f >> 13;
    }
    return (unsigned short)(o | (sign >> 16));
}

// The PTX ISA layout of mma.m16n8k16 with .f16 A/B and .f32 C/D
// (groupID = lane >> 2, threadID_in_group = lane % 4):
//   A (16x16, row): a[reg] holds rows gid (+8 for reg 1, 3), columns
//                   2*tig + {0,1} (+8 for reg 2, 3), low half first;
//   B (16x8, col):  b[reg] holds rows (k) 2*tig + {0,1} (+8 for reg 1),
//                   column gid;
//   C/D (16x8):     d[e] is row gid (+8 for e >= 2), column 2*tig + (e & 1).
// Products of fp16 values are exact in f32; the sum runs over k in order.
struct MmaSlot {
    unsigned a[4], b[2];
};
static MmaSlot g_mma[2][MAX_THREADS / 32][32];

void mma_m16n8k16(float d[4], const unsigned a[4], const unsigned b[2]) {
    Runtime& r = rt();
    const int i = r.cur, warp = i / 32, lane = i % 32;
    const unsigned par = r.fibers[i].mma_seq++ & 1;
    MmaSlot& mine = g_mma[par][warp][lane];
    for (int k = 0; k < 4; ++k) mine.a[k] = a[k];
    for (int k = 0; k < 2; ++k) mine.b[k] = b[k];
    suspend(WAIT_WARP, "mma.sync.m16n8k16", 0);
    // Every lane of the warp has deposited its fragments (double-buffered
    // by `par`: a lane cannot deposit twice before all have read).
    const MmaSlot* s = g_mma[par][warp];
    auto half = [](unsigned v, int k) { return h16_to_f32((unsigned short)(v >> (16 * (k & 1)))); };
    auto A = [&](int row, int k) {
        return half(s[(row % 8) * 4 + (k % 8) / 2].a[(row >= 8) + 2 * (k >= 8)], k);
    };
    auto B = [&](int k, int col) { return half(s[col * 4 + (k % 8) / 2].b[k >= 8], k); };
    const int gid = lane >> 2, tig = lane & 3;
    for (int e = 0; e < 4; ++e) {
        int row = gid + 8 * (e >> 1), col = 2 * tig + (e & 1);
        float acc = d[e];
        for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
        d[e] = acc;
    }
}

}  // namespace rawgraph_emu

// ---------------------------------------------------------------- probes
// Small kernels that exercise the emulator itself (tests/cuda_emu.rs checks
// that each misbehaviour is caught).

extern "C" __global__ void probe_access(float* buf, int index, int write) {
    if (threadIdx.x != 0) return;
    if (write) buf[index] = 1.0f;
    else buf[0] = buf[index];
}

// Thread t writes s[t] for t < written, then everyone reads s[t].
extern "C" __global__ void probe_shared(float* out, int written) {
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t < written) s[t] = (float)t;
    __syncthreads();
    out[t] = s[t];
}

// Threads 0 and 1 write the same shared word between two barriers.
extern "C" __global__ void probe_race(float* out) {
    __shared__ float s;
    int t = threadIdx.x;
    if (t < 2) s = (float)t;
    __syncthreads();
    out[t] = s;
}

// mode 0: threads below 16 sync at one barrier, the rest at another;
// mode 1: thread 0 returns before a barrier the others reach.
extern "C" __global__ void probe_divergent(float* out, int mode) {
    int t = threadIdx.x;
    if (mode == 0) {
        if (t < 16) __syncthreads();
        else __syncthreads();
    } else {
        if (t == 0) return;
        __syncthreads();
    }
    out[t] = 1.0f;
}

// One m16n8k16 MMA per warp: lane l passes a[4l..4l+4), b[2l..2l+2) and
// accumulates into d[4l..4l+4).
extern "C" __global__ void probe_mma(const unsigned* a, const unsigned* b, float* d) {
    int l = threadIdx.x;
    float acc[4] = {d[4 * l], d[4 * l + 1], d[4 * l + 2], d[4 * l + 3]};
    unsigned fa[4] = {a[4 * l], a[4 * l + 1], a[4 * l + 2], a[4 * l + 3]};
    unsigned fb[2] = {b[2 * l], b[2 * l + 1]};
    rawgraph_emu::mma_m16n8k16(acc, fa, fb);
    for (int e = 0; e < 4; ++e) d[4 * l + e] = acc[e];
}

static const KernelEntry probes[] = {
    RAWGRAPH_EMU_ENTRY("emu_probes", probe_access),
    RAWGRAPH_EMU_ENTRY("emu_probes", probe_shared),
    RAWGRAPH_EMU_ENTRY("emu_probes", probe_race),
    RAWGRAPH_EMU_ENTRY("emu_probes", probe_divergent),
    RAWGRAPH_EMU_ENTRY("emu_probes", probe_mma),
    {nullptr, nullptr, nullptr, nullptr},
};

// Generated by build.rs: one table per kernels/*.cu file, null-terminated.
extern "C" const KernelEntry* const rawgraph_emu_tables[];

// ---------------------------------------------------------------- C API

static const KernelEntry* find(const char* file, const char* name) {
    for (const KernelEntry* e = probes; e->file; ++e)
        if (!strcmp(e->file, file) && !strcmp(e->name, name)) return e;
    for (const KernelEntry* const* t = rawgraph_emu_tables; *t; ++t)
        for (const KernelEntry* e = *t; e->file; ++e)
            if (!strcmp(e->file, file) && !strcmp(e->name, name)) return e;
    return nullptr;
}

static void set_err(char* err, size_t len, const std::string& s) {
    if (len == 0) return;
    snprintf(err, len, "%s", s.c_str());
}

// A zero-filled device buffer of `bytes` with guard pages; the data ends at
// the upper guard page, or (guard_before != 0) starts at the lower one.
// Returns null on failure. `id` receives the buffer's number (for messages).
extern "C" void* rawgraph_emu_alloc(size_t bytes, int guard_before, int* id) {
    Runtime& r = rt();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (bytes + r.page - 1) / r.page * r.page;
    if (span == 0) span = r.page;
    size_t len = span + 2 * r.page;
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    char* map = (char*)m;
    mprotect(map, r.page, PROT_NONE);
    mprotect(map + r.page + span, r.page, PROT_NONE);
    memset(map + r.page, 0xFF, span);
    char* data = guard_before ? map + r.page : map + r.page + span - bytes;
    memset(data, 0, bytes);
    Alloc a{map, len, data, bytes, r.next_id++};
    r.allocs.push_back(a);
    *id = a.id;
    return data;
}

extern "C" void rawgraph_emu_free(void* data) {
    Runtime& r = rt();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (size_t i = 0; i < r.allocs.size(); ++i) {
        if (r.allocs[i].data == data) {
            munmap(r.allocs[i].map, r.allocs[i].map_len);
            r.allocs.erase(r.allocs.begin() + (long)i);
            return;
        }
    }
}

// The parameter types of kernel `name` in `file` (see register.h), or null.
extern "C" const char* rawgraph_emu_signature(const char* file, const char* name) {
    const KernelEntry* e = find(file, name);
    return e ? e->signature() : nullptr;
}

// Launches kernel `name` of `file` on a grid of `grid` blocks of `block`
// threads; `args` as cuLaunchKernel's kernelParams, `sig` the types the
// caller pushed. Returns 0, or 1 with a message in `err`.
extern "C" int rawgraph_emu_launch(const char* file, const char* name, const unsigned grid[3],
                                   const unsigned block[3], const char* sig, void** args, int reverse,
                                   char* err, size_t err_len) {
    Runtime& r = rt();
    std::lock_guard<std::mutex> lock(r.mutex);
    install_handlers();
    const KernelEntry* e = find(file, name);
    if (!e) {
        set_err(err, err_len, fmt("no emulated kernel %s in %s", name, file));
        return 1;
    }
    if (strcmp(e->signature(), sig) != 0) {
        set_err(err, err_len,
                fmt("%s/%s takes (%s) but the launch passed (%s)", file, name, e->signature(), sig));
        return 1;
    }
    unsigned n = block[0] * block[1] * block[2];
    if (n == 0 || n > MAX_THREADS || grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[1] > 65535 ||
        grid[2] > 65535) {
        set_err(err, err_len,
                fmt("%s/%s: invalid launch grid (%u,%u,%u) x block (%u,%u,%u)", file, name, grid[0], grid[1],
                    grid[2], block[0], block[1], block[2]));
        return 1;
    }
    r.kernel = e;
    r.args = args;
    r.error.clear();
    ensure_stacks(n);
    if (!r.error.empty()) {
        set_err(err, err_len, r.error);
        return 1;
    }
    rawgraph_emu::grid_dim = {grid[0], grid[1], grid[2]};
    rawgraph_emu::block_dim = {block[0], block[1], block[2]};
    if (sigsetjmp(g_jmp, 1) != 0) {
        r.error = g_fault;
    } else {
        bool ok = true;
        for (unsigned z = 0; ok && z < grid[2]; ++z)
            for (unsigned y = 0; ok && y < grid[1]; ++y)
                for (unsigned x = 0; ok && x < grid[0]; ++x) {
                    rawgraph_emu::block_idx = {x, y, z};
                    ok = run_block(reverse != 0);
                }
        std::string canary;
        if (ok && !check_canaries(canary)) r.error = canary;
    }
    g_in_fiber = 0;
    if (!r.error.empty()) {
        set_err(err, err_len, r.error);
        return 1;
    }
    return 0;
}
