#!/usr/bin/env bash
# Build the kubeconfig the launcher and reconcile functions use, and store it as a new version of the
# Secret Manager secret `training-kubeconfig` (mounted at /secrets/kubeconfig/kubeconfig, K8S_KUBECONFIG).
#
# Its user is the in-cluster service account training-launcher (infra/k8s/serviceaccounts.yaml), whose
# Role allows Jobs and Secrets in the training namespace only, and whose token lives in the Secret
# training-launcher-token. This works the same for GKE, EKS, AKS and CoreWeave: the functions need no
# cloud CLI or exec plugin.
#
# Usage: infra/scripts/make_launcher_kubeconfig.sh PROJECT_ID [NAMESPACE]
#   (run with KUBECONFIG/current context pointing at the cluster, after `kubectl apply` of infra/k8s)
#   DRY_RUN=1 prints the kubeconfig instead of uploading it.
set -euo pipefail

PROJECT_ID="${1:?usage: $0 PROJECT_ID [NAMESPACE]}"
NAMESPACE="${2:-training}"
SECRET_ID="${SECRET_ID:-training-kubeconfig}"

server="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"

token=""
for _ in $(seq 1 30); do
  token="$(kubectl -n "$NAMESPACE" get secret training-launcher-token -o jsonpath='{.data.token}' 2>/dev/null || true)"
  [[ -n "$token" ]] && break
  sleep 2 # the token controller fills the Secret shortly after it is created
done
if [[ -z "$token" ]]; then
  echo "no token in $NAMESPACE/training-launcher-token; apply infra/k8s first" >&2
  exit 1
fi
token="$(printf '%s' "$token" | base64 -d)"

ca_line=""
if [[ -n "$ca" ]]; then
  ca_line="    certificate-authority-data: ${ca}"
fi

kubeconfig="$(cat <<YAML
apiVersion: v1
kind: Config
current-context: training-launcher
clusters:
- name: training
  cluster:
    server: ${server}
${ca_line}
contexts:
- name: training-launcher
  context:
    cluster: training
    namespace: ${NAMESPACE}
    user: training-launcher
users:
- name: training-launcher
  user:
    token: ${token}
YAML
)"

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  printf '%s\n' "$kubeconfig"
  exit 0
fi

printf '%s\n' "$kubeconfig" | gcloud secrets versions add "$SECRET_ID" --project="$PROJECT_ID" --data-file=-
echo "stored a new version of $SECRET_ID; functions read 'latest' on their next cold start"
