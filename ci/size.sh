#!/usr/bin/env bash
# Embedded code size (issue "benchmarks", item "Embedded size"): the GCRA
# check and the whole of tollgate-core in the firmware-shaped smoke binary
# (tests/no_std-smoke), for thumbv7em-none-eabihf and thumbv6m-none-eabi,
# release profile (lto = true, codegen-units = 1, panic = "abort") at
# opt-level "s" (the crate's own setting) and 3, read from the ELF's symbols.
#
# Runs alone on a machine with only rustup: it adds the targets and the
# llvm-tools component (llvm-nm, llvm-objdump, llvm-size are taken from
# $(rustc --print sysroot)/lib/rustlib/<host>/bin, no cargo-binutils).
# Not part of .ci/run: it measures, it does not gate (the check against the
# 512-byte target is printed, not enforced).
#
# What "GCRA check" measures. `Gcra::check` is `#[inline]`, so it has no
# symbol of its own; tests/no_std-smoke/src/main.rs therefore has
#     #[inline(never)] fn gcra_check(limiter: &Gcra, now: Nanos) -> Decision
# (the limiter passed through `black_box`, so LTO cannot specialise it for
# one constant quota, and the full `Decision` returned, so nothing of the
# check is optimised away). Its symbol `tollgate_no_std_smoke::gcra_check`
# holds whatever the optimiser inlined of Gcra::check -> check_n -> step ->
# Step::decision -> remaining -> Quota::units_in; what it did not inline, it
# calls. Measured with rustc 1.95 (the script lists the callees, so a change
# shows up in its output):
#   * thumbv7em (portable-atomic's default global spinlocks), "s": a call of
#     the outlined `Gcra::check_n` (it also serves the `All` composite),
#     which inlines the lock (ldrex/strex spin with backoff, `dmb`, a LOCKS
#     array in .bss) once — `ONE_RMW` in core/src/gcra.rs: one
#     compare-exchange site, no separate load — and calls `gcra::remaining`
#     (kept out of line on targets without 64-bit atomics so that its
#     multiplies are not copied into both arms of the decision). At 3 the
#     check is inlined into the wrapper.
#   * thumbv7em+single-core (`unsafe-assume-single-core`: cpsid/cpsie around
#     the 64-bit access): the whole check inlined into the wrapper, plus
#     `remaining`.
#   * thumbv6m (the firmware's critical section, cortex-m's
#     critical-section-single-core: mrs primask / cpsid i / msr primask,
#     inlined by LTO): the check inlined into the wrapper; it calls
#     `remaining` and compiler-builtins' `__aeabi_lmul` (64-bit multiplies).
# No 64-bit division (`__aeabi_uldivmod`) and no panic path is reached.
# The script follows direct calls and tail calls (bl, b, b.w) transitively
# from the wrapper, lists every callee with its size, and reports
#   wrapper    the wrapper symbol alone;
#   +core/pa   the wrapper plus its transitive callees from tollgate_core and
#              portable_atomic: the GCRA check's own code (the number compared
#              with the 512-byte target on thumbv7em);
#   closure    everything reachable from the wrapper, also the critical-section
#              implementation, compiler-builtins and the panic path (runtime
#              code the check needs but shares with any firmware).
# "core" is every code symbol whose demangled name contains `tollgate_core`
# (monomorphised generics included, e.g. `<&L as tollgate_core::..::Limiter>
# ::check_n`), counted once per address; code of the core inlined into the
# smoke crate's own functions (`run`, `gcra_check`) is not in it. ".text" is
# the binary's whole .text section (llvm-size): core, portable-atomic,
# cortex-m-rt, compiler-builtins and the smoke crate.
set -euo pipefail
cd "$(dirname "$0")/../tests/no_std-smoke"

# A target may carry "+single-core": the smoke crate's `single-core` feature
# (portable-atomic's unsafe-assume-single-core: interrupts disabled around
# the 64-bit access instead of its global spinlocks).
targets=(thumbv7em-none-eabihf thumbv7em-none-eabihf+single-core thumbv6m-none-eabi)
opt_levels=(s 3)
wrapper=tollgate_no_std_smoke::gcra_check
limit_target=thumbv7em-none-eabihf
limit_bytes=512

echo "== ci/size.sh: ${targets[*]} at opt-level ${opt_levels[*]}"
rustup target add $(printf '%s\n' "${targets[@]}" | sed 's/+.*//' | sort -u)
rustup component add llvm-tools
host=$(rustc -vV | sed -n 's/^host: //p')
bin="$(rustc --print sysroot)/lib/rustlib/$host/bin"
for tool in llvm-nm llvm-objdump llvm-size; do
    [[ -x "$bin/$tool" ]] || {
        echo "ci/size.sh: $bin/$tool missing after 'rustup component add llvm-tools'" >&2
        exit 1
    }
done

# Reads `llvm-nm -C --print-size --defined-only` (first file) and
# `llvm-objdump -d --no-show-raw-insn` (second file) of one ELF. Prints
#   R <wrapper> <core/pa> <closure> <core total> <indirect calls in closure>
#   C <size> <class> <name>         one line per callee of the wrapper
# Portable awk (mawk has no strtonum).
analyse() {
    awk -v wrapper="$wrapper" '
        function hex(s,   i, c, n) {
            n = 0; s = tolower(s); sub(/^0x/, "", s)
            for (i = 1; i <= length(s); i++) {
                c = index("0123456789abcdef", substr(s, i, 1)) - 1
                n = n * 16 + c
            }
            return n
        }
        function key(s) { s = tolower(s); sub(/^0x/, "", s); sub(/^0+/, "", s); return s == "" ? "0" : s }
        function class(name) {
            if (name ~ /tollgate_core/) return "tollgate_core"
            if (name ~ /portable_atomic/) return "portable_atomic"
            if (name ~ /critical_section/) return "critical_section"
            if (name ~ /compiler_builtins|^__aeabi|^__udiv|^__div|^__mul|^__ashl|^__lshr/) return "compiler_builtins"
            if (name ~ /core::panicking|panic|HardFault/) return "panic"
            return "other"
        }
        FNR == 1 { file++ }
        # llvm-nm: address size type name (the name may contain spaces)
        file == 1 && NF >= 4 && $3 ~ /^[tTwW]$/ {
            name = $0
            sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
            k = key($1)
            if (!(k in size)) { size[k] = hex($2); fname[k] = name }
            if (name ~ /tollgate_core/ && !(k in counted)) { counted[k] = 1; core += hex($2) }
            if (index(name, wrapper "::") == 1 || name == wrapper) root = k
            next
        }
        # llvm-objdump: function headers and branches to other symbols
        file == 2 && /^[0-9a-f]+ <.*>:$/ { cur = key($1); next }
        file == 2 && cur != "" {
            line = $0
            if (line ~ /\tblx\t[a-z]/) { indirect[cur] = 1; next }
            if (line ~ /\tb[a-z.]*\t0x[0-9a-f]+ <[^>+]*>/) {
                t = line
                sub(/.*\tb[a-z.]*\t0x/, "", t)
                sub(/ .*/, "", t)
                t = key(t)
                if (t != cur) { edge[cur, ++nedge[cur]] = t }
            }
        }
        END {
            if (root == "") { print "E no symbol " wrapper; exit 1 }
            seen[root] = 1; queue[1] = root; head = 1; tail = 1
            while (head <= tail) {
                f = queue[head++]
                for (i = 1; i <= nedge[f]; i++) {
                    t = edge[f, i]
                    if (!(t in seen)) { seen[t] = 1; queue[++tail] = t }
                }
            }
            own = size[root]; closure = 0; nind = 0
            for (i = 1; i <= tail; i++) {
                k = queue[i]; s = (k in size) ? size[k] : 0
                closure += s
                if (k in indirect) nind++
                if (i == 1) continue
                c = class(fname[k])
                if (c == "tollgate_core" || c == "portable_atomic") own += s
                printf "C %d %s %s\n", s, c, (k in fname) ? fname[k] : "0x" k
            }
            printf "R %d %d %d %d %d\n", size[root], own, closure, core, nind
        }
    ' "$1" "$2"
}

rows=()
details=()
for opt in "${opt_levels[@]}"; do
    for t in "${targets[@]}"; do
        triple=${t%%+*}
        features=()
        dir="target/size-$opt"
        if [[ "$t" == *+single-core ]]; then
            features=(--features single-core)
            dir="target/size-$opt-single-core"
        fi
        echo "-- smoke crate for $t at opt-level $opt"
        CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt" \
            cargo build --locked --release --target "$triple" --target-dir "$dir" "${features[@]}"
        out="$dir/$triple/release"
        elf="$out/tollgate-no-std-smoke"
        "$bin/llvm-nm" -C --print-size --defined-only "$elf" >"$out/size-nm.txt"
        "$bin/llvm-objdump" -d --no-show-raw-insn "$elf" >"$out/size-objdump.txt"
        text=$("$bin/llvm-size" -A "$elf" | awk '$1 == ".text" { print $2 }')
        result=$(analyse "$out/size-nm.txt" "$out/size-objdump.txt")
        read -r _ w own closure core nind <<<"$(grep '^R ' <<<"$result")"
        rows+=("$t $opt $w $own $closure $core $text")
        details+=("$t opt-level $opt: $wrapper = $w B; callees (transitive):")
        while read -r _ s c name; do
            details+=("$(printf '    %6d  %-17s %s' "$s" "$c" "$name")")
        done < <(grep '^C ' <<<"$result" || true)
        if [[ "$nind" != 0 ]]; then
            details+=("    ($nind function(s) in the closure also call through a register: not followed)")
        fi
    done
done

echo
echo "== callees of $wrapper (sizes in bytes; classes tollgate_core and portable_atomic count in +core/pa)"
printf '%s\n' "${details[@]}"

echo
echo "== code size in bytes (release, lto, codegen-units = 1, panic = abort)"
printf '%-34s %-4s %8s %9s %8s %7s %7s\n' target opt wrapper +core/pa closure core .text
for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-34s %-4s %8s %9s %8s %7s %7s\n' $r
done

echo
verdict=()
for r in "${rows[@]}"; do
    read -r t opt _ own _ _ _ <<<"$r"
    if [[ "${t%%+*}" == "$limit_target" ]]; then
        if ((own <= limit_bytes)); then ok="met"; else ok="NOT met"; fi
        verdict+=("$t opt-level $opt: $own B, $ok")
    fi
done
printf 'target: GCRA check (+core/pa) <= %d B on %s:\n' "$limit_bytes" "$limit_target"
printf '    %s\n' "${verdict[@]}"

echo
echo "== markdown (for BENCHMARKS.md)"
echo
echo "| target | opt-level | GCRA check: wrapper | + tollgate_core/portable_atomic callees | + all callees (critical section, compiler-builtins, panic) | tollgate_core symbols | .text |"
echo "|---|---|--:|--:|--:|--:|--:|"
for r in "${rows[@]}"; do
    read -r t opt w own closure core text <<<"$r"
    echo "| $t | \"$opt\" | $w | $own | $closure | $core | $text |"
done
echo
echo "Bytes, from the ELF symbols of tests/no_std-smoke (release, lto, codegen-units = 1, panic = abort), \`bash ci/size.sh\` with $(rustc -V)."
