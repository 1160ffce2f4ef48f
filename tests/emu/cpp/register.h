// register.h: the kernel table of the CUDA emulator. Each kernel is called
// through a trampoline that unpacks `void** args` exactly as cuLaunchKernel's
// `kernelParams` (one pointer to each argument's value, in order), so the
// Rust launcher pushes the same argument list as the cudarc launch. The
// parameter types become a signature string ("f32* u16* i32 f32 i64")
// that the launcher compares with the types it was given.

#pragma once

#include <string>
#include <type_traits>
#include <utility>

namespace rawgraph_emu {

struct KernelEntry {
    const char* file;               // kernels/ file name, e.g. "demosaic.cu"
    const char* name;               // extern "C" entry point
    const char* (*signature)();     // parameter types, space-separated
    void (*call)(void** args);      // runs the kernel for the current thread
};

template <class T>
constexpr const char* scalar_token() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<U, float>) return "f32";
    else if constexpr (std::is_same_v<U, int>) return "i32";
    else if constexpr (std::is_same_v<U, long long>) return "i64";
    else if constexpr (std::is_same_v<U, unsigned short>) return "u16";
    else if constexpr (std::is_same_v<U, unsigned>) return "u32";
    else static_assert(sizeof(U) == 0, "kernel parameter type without an emulator token");
}

template <class T>
std::string token() {
    if constexpr (std::is_pointer_v<T>) return std::string(scalar_token<std::remove_pointer_t<T>>()) + "*";
    else return scalar_token<T>();
}

template <auto F>
struct Trampoline;

template <class... A, void (*F)(A...)>
struct Trampoline<F> {
    static void call(void** p) { unpack(p, std::index_sequence_for<A...>{}); }
    template <size_t... I>
    static void unpack(void** p, std::index_sequence<I...>) {
        F(*static_cast<std::remove_cv_t<A>*>(p[I])...);
    }
    static const char* signature() {
        static const std::string s = [] {
            std::string out;
            ((out += (out.empty() ? "" : " ") + token<A>()), ...);
            return out;
        }();
        return s.c_str();
    }
};

}  // namespace rawgraph_emu

#define RAWGRAPH_EMU_ENTRY(file, fn) \
    { file, #fn, &rawgraph_emu::Trampoline<&fn>::signature, &rawgraph_emu::Trampoline<&fn>::call }
