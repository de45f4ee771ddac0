# Sourced by the bench scripts: free_port VAR sets VAR to a port on which nothing listens or
# connects (TCP or UDP) and that this script has not handed out before.
TAKEN=" "
free_port() { # VAR
    local p
    for _ in $(seq 500); do
        p=$((20000 + RANDOM % 40000))
        case "$TAKEN" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htuan "sport = :$p" 2>/dev/null)" ]; then
            TAKEN+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    if declare -F die >/dev/null; then die "no free port found"; fi
    echo "$(basename "$0"): no free port found" >&2
    exit 2
}
