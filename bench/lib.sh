# Shared helpers for the benchmarks: timing with medians, tree generators.
# Sourced by bench/* scripts; not run on its own.

LAYERFS=${LAYERFS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/layerfs}
RUNS=${RUNS:-5}

# now_ns: monotonic-ish wall clock in nanoseconds.
now_ns() { date +%s%N; }

# median_ms CMD...: runs CMD $RUNS times (its output discarded) with `prep` (a shell function
# the caller may define, run before each timed run and not timed) and prints the median in ms.
median_ms() {
  local times=() i t0 t1
  for ((i = 0; i < RUNS; i++)); do
    if declare -F prep >/dev/null; then prep; fi
    sync
    t0=$(now_ns)
    "$@" >/dev/null 2>&1 || { echo "bench: '$*' failed" >&2; return 1; }
    t1=$(now_ns)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f\n", m / 1000}'
}

# ratio A B: A/B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }

# gen_source_tree DIR N: N small files (200 B - 8 KiB) in a source-tree shape: 100 files a
# directory, directories three levels deep.  Deterministic content.
gen_source_tree() {
  local dir=$1 n=$2
  python3 - "$dir" "$n" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
for i in range(n):
    d = os.path.join(root, "src%02d" % (i // 10000), "mod%03d" % ((i // 100) % 100))
    os.makedirs(d, exist_ok=True)
    size = rng.randint(200, 8192)
    with open(os.path.join(d, "file%05d.c" % i), "wb") as f:
        f.write((b"int f%d(void) { return %d; }\n" % (i, i)) * (size // 30 + 1))
PY
}

# gen_mixed_tree DIR MIB: about MIB MiB of files of mixed sizes (4 KiB - 64 MiB), random data.
gen_mixed_tree() {
  local dir=$1 mib=$2
  python3 - "$dir" "$mib" <<'PY'
import os, sys, random
root, total = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(7)
os.makedirs(root, exist_ok=True)
sizes = [4 << 10, 64 << 10, 1 << 20, 8 << 20, 64 << 20]
written, i = 0, 0
chunk = os.urandom(1 << 20)
while written < total:
    size = min(sizes[i % len(sizes)], total - written)
    d = os.path.join(root, "d%02d" % (i % 16))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        left = size
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
    written += size
    i += 1
PY
}
