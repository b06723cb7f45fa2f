#!/usr/bin/env bash
# Starts a real kube-apiserver (scripts/kube-apiserver.sh builds it) on
# 127.0.0.1, on an etcd of its own, for the test matrix:
#   - a self-signed serving certificate (the server's own, in DIR/certs),
#     and service-account signing keys made here;
#   - a static token file: `admin` (system:masters) and `tenure`, a user
#     with no rights but what a test binds to it (backend-k8s/deploy/rbac.yaml);
#   - RBAC authorization, coordination.k8s.io/v1beta1 served and the
#     CoordinatedLeaderElection feature gate on.
# Waits for /readyz, writes DIR/kubeconfig (the admin) and
# DIR/kubeconfig-tenure (the least-privilege user), and prints the
# environment for the tests:
#   KUBECONFIG=DIR/kubeconfig TENURE_K8S_TENURE_KUBECONFIG=... TENURE_KUBE_PIDS="..."
# Stop with: kill $TENURE_KUBE_PIDS.
#
#   bash scripts/kube-apiserver-up.sh DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:?usage: kube-apiserver-up.sh DIR}
mkdir -p "$dir/certs"
dir=$(cd "$dir" && pwd)

bin=$(bash "$root/scripts/kube-apiserver.sh")
etcd_bin=${TENURE_KUBE_ETCD:-$(command -v etcd || true)}
[ -n "$etcd_bin" ] || { echo "kube-apiserver-up.sh: etcd missing (apt-get install -y etcd-server)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "kube-apiserver-up.sh: openssl missing (apt-get install -y openssl)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

"$etcd_bin" --data-dir "$dir/etcd" --name kube \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "kube=http://127.0.0.1:$peer_port" >"$dir/etcd.log" 2>&1 &
etcd_pid=$!

openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
admin=$(token); limited=$(token)
printf '%s,admin,admin,system:masters\n%s,tenure,tenure\n' "$admin" "$limited" >"$dir/tokens.csv"

start=$(date +%s%N)
"$bin" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --bind-address=127.0.0.1 --secure-port="$api_port" --advertise-address=127.0.0.1 \
  --cert-dir="$dir/certs" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
  --token-auth-file="$dir/tokens.csv" \
  --authorization-mode=RBAC \
  --runtime-config=coordination.k8s.io/v1beta1=true,coordination.k8s.io/v1alpha2=true \
  --feature-gates=CoordinatedLeaderElection=true \
  --service-cluster-ip-range=10.96.0.0/24 \
  --endpoint-reconciler-type=none \
  >"$dir/kube-apiserver.log" 2>&1 &
api_pid=$!

url="https://127.0.0.1:$api_port"
for _ in $(seq 1 600); do
  if [ "$(curl -ks -H "Authorization: Bearer $admin" "$url/readyz" || true)" = ok ]; then
    ready=1
    break
  fi
  kill -0 "$api_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "${ready:-}" ]; then
  echo "kube-apiserver-up.sh: kube-apiserver not ready; its log:" >&2
  tail -30 "$dir/kube-apiserver.log" >&2
  kill "$api_pid" "$etcd_pid" 2>/dev/null || true
  exit 1
fi
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "kube-apiserver-up.sh: kube-apiserver $("$bin" --version 2>/dev/null | awk '{print $2}') ready at $url in $took_ms ms (etcd $("$etcd_bin" --version | head -1 | awk '{print $3}'))" >&2

kubeconfig() { # USER TOKEN
  cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: tenure-test
  cluster:
    server: $url
    certificate-authority: $dir/certs/apiserver.crt
contexts:
- name: tenure-test
  context:
    cluster: tenure-test
    user: $1
    namespace: default
current-context: tenure-test
users:
- name: $1
  user:
    token: $2
YAML
}
kubeconfig admin "$admin" >"$dir/kubeconfig"
kubeconfig tenure "$limited" >"$dir/kubeconfig-tenure"
chmod 600 "$dir/kubeconfig" "$dir/kubeconfig-tenure" "$dir/tokens.csv"
echo "KUBECONFIG=$dir/kubeconfig"
echo "TENURE_K8S_TENURE_KUBECONFIG=$dir/kubeconfig-tenure"
echo "TENURE_KUBE_PIDS=$api_pid $etcd_pid"
