// got.cc: see got.hh. ELF only (Linux); x86-64 and AArch64 relocation types.
#include "got.hh"

#include <cstdint>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

namespace evalcost::got {
namespace {

#if defined(__x86_64__)
constexpr unsigned jumpSlot = R_X86_64_JUMP_SLOT, globDat = R_X86_64_GLOB_DAT;
#elif defined(__aarch64__)
constexpr unsigned jumpSlot = R_AARCH64_JUMP_SLOT, globDat = R_AARCH64_GLOB_DAT;
#else
#error "passive profiling knows the relocation types of x86-64 and AArch64 only"
#endif

struct Target
{
    const char * symbol;
    void * replacement;
    int patched = 0;
};

// glibc stores most of the dynamic section's addresses relocated already; some loaders do not.
uintptr_t address(const ElfW(Addr) base, ElfW(Addr) value)
{
    return value < base ? base + value : value;
}

bool writable(void ** slot)
{
    long page = sysconf(_SC_PAGESIZE);
    auto start = reinterpret_cast<uintptr_t>(slot) & ~uintptr_t(page - 1);
    // The slot may be in the read-only RELRO part (full RELRO): make its page writable. It stays
    // writable: a read-only page would gain nothing once the slot holds our address.
    return mprotect(reinterpret_cast<void *>(start), size_t(page), PROT_READ | PROT_WRITE) == 0;
}

void patchRelocations(const ElfW(Rela) * rel, size_t bytes, ElfW(Addr) base, const ElfW(Sym) * symtab,
    const char * strtab, Target & target)
{
    for (size_t i = 0; i < bytes / sizeof(ElfW(Rela)); ++i) {
        auto type = ELF64_R_TYPE(rel[i].r_info);
        if (type != jumpSlot && type != globDat) continue;
        const char * name = strtab + symtab[ELF64_R_SYM(rel[i].r_info)].st_name;
        if (std::strcmp(name, target.symbol) != 0) continue;
        auto ** slot = reinterpret_cast<void **>(base + rel[i].r_offset);
        if (*slot == target.replacement) {
            ++target.patched;
            continue;
        }
        if (!writable(slot)) continue;
        *slot = target.replacement;
        ++target.patched;
    }
}

// The executable (glibc names it "") and Nix's libraries; never this plugin.
bool isNixObject(const char * path)
{
    if (path[0] == '\0') return true;
    const char * file = std::strrchr(path, '/');
    file = file ? file + 1 : path;
    return std::strncmp(file, "libnix", 6) == 0 && std::strncmp(file, "libnix_evalcost", 15) != 0;
}

int visit(struct dl_phdr_info * info, size_t, void * data)
{
    auto & target = *static_cast<Target *>(data);
    if (!isNixObject(info->dlpi_name ? info->dlpi_name : "")) return 0;
    const ElfW(Dyn) * dyn = nullptr;
    for (int i = 0; i < info->dlpi_phnum; ++i)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = reinterpret_cast<const ElfW(Dyn) *>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn) return 0;
    const ElfW(Sym) * symtab = nullptr;
    const char * strtab = nullptr;
    const ElfW(Rela) *jmprel = nullptr, *rela = nullptr;
    size_t jmprelSize = 0, relaSize = 0;
    auto base = info->dlpi_addr;
    for (; dyn->d_tag != DT_NULL; ++dyn) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = reinterpret_cast<const ElfW(Sym) *>(address(base, dyn->d_un.d_ptr)); break;
        case DT_STRTAB: strtab = reinterpret_cast<const char *>(address(base, dyn->d_un.d_ptr)); break;
        case DT_JMPREL: jmprel = reinterpret_cast<const ElfW(Rela) *>(address(base, dyn->d_un.d_ptr)); break;
        case DT_PLTRELSZ: jmprelSize = dyn->d_un.d_val; break;
        case DT_RELA: rela = reinterpret_cast<const ElfW(Rela) *>(address(base, dyn->d_un.d_ptr)); break;
        case DT_RELASZ: relaSize = dyn->d_un.d_val; break;
        }
    }
    if (!symtab || !strtab) return 0;
    if (jmprel) patchRelocations(jmprel, jmprelSize, base, symtab, strtab, target);
    if (rela) patchRelocations(rela, relaSize, base, symtab, strtab, target);
    return 0;
}

} // namespace

void * redirect(const char * symbol, void * replacement, int * patched) noexcept
{
    void * real = dlsym(RTLD_DEFAULT, symbol);
    if (!real) return nullptr;
    Target target{symbol, replacement};
    dl_iterate_phdr(visit, &target);
    if (patched) *patched = target.patched;
    return real;
}

} // namespace evalcost::got
