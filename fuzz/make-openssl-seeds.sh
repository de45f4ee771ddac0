#!/usr/bin/env bash
# Writes the openssl-made seeds of the csr and cert_info targets (a second encoder next to
# rcgen's, see examples/make_seeds.rs, which checks that they stay valid inputs). The keys are
# made in a temporary directory and deleted.
set -euo pipefail
cd "$(dirname "$0")"
out=$PWD/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
for kind in p256 rsa2048 ed25519; do
  case $kind in
    p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem ;;
    rsa2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem ;;
    ed25519) openssl genpkey -algorithm ED25519 -out key.pem ;;
  esac
  openssl req -new -key key.pem -subj "/CN=host.example.test" \
    -addext "subjectAltName=DNS:host.example.test,DNS:xn--bcher-kva.example,IP:198.51.100.4,IP:2001:db8::4" \
    -outform DER -out "$out/csr/seed-openssl-$kind"
  openssl req -x509 -key key.pem -subj "/CN=host.example.test" -days 30 \
    -addext "subjectAltName=DNS:host.example.test,IP:198.51.100.4" \
    -addext "keyUsage=critical,digitalSignature" \
    -outform DER -out "$out/cert_info/seed-openssl-$kind"
done
# ocsp_request: what `openssl ocsp -reqout` sends (SHA-1 and SHA-256 CertIDs, with and without a
# nonce, two CertIDs, a signed request), and the GET form of one.
mkdir -p "$out/ocsp_request"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=Seed CA" -days 30 \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl ocsp -issuer ca.pem -serial 0x1234 -reqout "$out/ocsp_request/seed-openssl-sha1-nonce"
openssl ocsp -issuer ca.pem -serial 0x1234 -no_nonce -reqout "$out/ocsp_request/seed-openssl-sha1"
openssl ocsp -issuer ca.pem -sha256 -serial 0x00ff -reqout "$out/ocsp_request/seed-openssl-sha256"
openssl ocsp -issuer ca.pem -serial 0x01 -serial 0x02 -reqout "$out/ocsp_request/seed-openssl-two"
openssl ocsp -issuer ca.pem -serial 0x01 -signer ca.pem -signkey ca.key -reqout "$out/ocsp_request/seed-openssl-signed"
base64 -w0 "$out/ocsp_request/seed-openssl-sha1" | sed 's,/,%2F,g' >"$out/ocsp_request/seed-openssl-get"
