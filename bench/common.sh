# bench/common.sh - sourced by the bench scripts: what several of them need.

# A yescrypt hash of $1 through libcrypt (the library the server checks it with).
bench_hash() {
    python3 - "$1" <<'PY'
import ctypes, ctypes.util, sys
lib = ctypes.CDLL(ctypes.util.find_library("crypt"))
lib.crypt_gensalt.restype = lib.crypt.restype = ctypes.c_char_p
lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
print(lib.crypt(sys.argv[1].encode(), lib.crypt_gensalt(b"$y$", 0, None, 0)).decode())
PY
}

# A scratch directory in $tmp and a list of PIDs in pids, both undone at exit: the
# background processes a script starts (append their $! to pids) are killed, the
# directory removed.
bench_scratch() {
    tmp=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
