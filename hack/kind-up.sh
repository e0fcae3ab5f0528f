#!/usr/bin/env bash
# slipway on kind, for users with Docker: a cluster from kind-config.yaml, cert-manager, KServe (Standard
# mode), kube-prometheus-stack, MinIO, slipway's images built and loaded, slipway from charts/slipway, and the
# sklearn example trained, verified and served. Not run in CI (no Docker engine there): see docs/kind.md.
#
#   hack/kind-up.sh            # everything; safe to re-run (each step is an install-or-upgrade)
#   SKIP_BUILD=1 hack/kind-up.sh   # reuse images already loaded
#   hack/kind-up.sh down       # delete the cluster
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-slipway}
NODE_IMAGE=${NODE_IMAGE:-kindest/node:v1.33.1}   # KServe v0.20 needs Kubernetes >= 1.32
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.17.0}
KSERVE_VERSION=${KSERVE_VERSION:-v0.20.0}
PROMETHEUS_CHART_VERSION=${PROMETHEUS_CHART_VERSION:-}   # empty: the repository's latest
NAMESPACE=${NAMESPACE:-default}                          # where the example goes
SYSTEM=slipway-system
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
REGISTRY=ghcr.io/slipway-dev
S3_ENDPOINT=http://minio.minio.svc:9000

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'kind-up: %s\n' "$*" >&2; exit 1; }

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH (needed: docker, kind, kubectl, helm)"
  done
  docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"
}

cluster_up() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "kind cluster $CLUSTER exists"
  else
    log "creating kind cluster $CLUSTER ($NODE_IMAGE)"
    kind create cluster --name "$CLUSTER" --config kind-config.yaml --image "$NODE_IMAGE" --wait 120s
  fi
  kubectl config use-context "kind-$CLUSTER" >/dev/null
}

cert_manager() {
  log "cert-manager $CERT_MANAGER_VERSION (KServe's webhooks need its certificates)"
  kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=300s
}

kserve() {
  local base="https://github.com/kserve/kserve/releases/download/$KSERVE_VERSION"
  log "KServe $KSERVE_VERSION (Standard mode: plain Deployments, no Knative or Istio)"
  # Server-side apply: the CRDs are too large for the last-applied-configuration annotation.
  kubectl apply --server-side --force-conflicts -f "$base/kserve.yaml"
  kubectl -n kserve wait --for=condition=Available deployment --all --timeout=300s
  kubectl apply --server-side --force-conflicts -f "$base/kserve-cluster-resources.yaml"
  kubectl -n kserve patch configmap inferenceservice-config --type merge \
    -p '{"data":{"deploy":"{\"defaultDeploymentMode\": \"Standard\"}"}}'
}

prometheus() {
  log "kube-prometheus-stack in monitoring (no Grafana; every ServiceMonitor and PodMonitor selected)"
  helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null 2>&1 || true
  helm repo update prometheus-community >/dev/null
  local version_flag=()
  [[ -n $PROMETHEUS_CHART_VERSION ]] && version_flag=(--version "$PROMETHEUS_CHART_VERSION")
  helm upgrade --install kps prometheus-community/kube-prometheus-stack "${version_flag[@]}" \
    --namespace monitoring --create-namespace --wait --timeout 10m \
    --set grafana.enabled=false \
    --set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
    --set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
    --set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false
  kubectl apply -f hack/kind/prometheus.yaml
}

minio() {
  log "MinIO in minio, with the models bucket"
  kubectl delete job -n minio minio-buckets --ignore-not-found >/dev/null
  kubectl apply -f hack/kind/minio.yaml
  kubectl -n minio rollout status deployment/minio --timeout=300s
  kubectl -n minio wait --for=condition=Complete job/minio-buckets --timeout=300s
}

# image name -> Dockerfile, build context and target. The operator's Dockerfile builds from the repository root;
# the runtimes' one Dockerfile has a target per runtime.
build_images() {
  local images=("slipway-operator operator/Dockerfile . -")
  local runtime
  for runtime in trainer predictor drift; do
    images+=("$runtime runtimes/Dockerfile runtimes $runtime")
  done
  local entry image file context target
  for entry in "${images[@]}"; do
    read -r image file context target <<<"$entry"
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
      log "building $REGISTRY/$image:$VERSION from $file"
      if [[ $target == - ]]; then
        docker build -t "$REGISTRY/$image:$VERSION" -f "$file" "$context"
      else
        docker build -t "$REGISTRY/$image:$VERSION" -f "$file" --target "$target" "$context"
      fi
    fi
    kind load docker-image --name "$CLUSTER" "$REGISTRY/$image:$VERSION"
  done
}

slipway() {
  log "slipway from charts/slipway into $SYSTEM"
  kubectl create namespace "$SYSTEM" --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$SYSTEM" apply -f examples/s3-credentials.yaml   # the drift runtime reads reference data
  local drift=true
  if ! docker image inspect "$REGISTRY/drift:$VERSION" >/dev/null 2>&1; then
    drift=false
    echo "no $REGISTRY/drift:$VERSION image (SKIP_BUILD=1 before it was ever built?): installing without the drift runtime"
  fi
  helm upgrade --install slipway charts/slipway --namespace "$SYSTEM" --create-namespace --wait --timeout 5m \
    --set image.pullPolicy=IfNotPresent \
    --set operator.s3.endpoint="$S3_ENDPOINT" \
    --set drift.enabled="$drift" \
    --set drift.s3.endpoint="$S3_ENDPOINT" \
    --set drift.s3.credentialsSecret=s3-credentials
}

example() {
  log "the sklearn example in $NAMESPACE: train, register, verify, serve"
  kubectl -n "$NAMESPACE" apply -f examples/s3-credentials.yaml
  kubectl -n "$NAMESPACE" apply -f runtimes/predictor/servingruntime.yaml
  kubectl -n "$NAMESPACE" apply -f examples/trainingjob-sklearn.yaml
  kubectl -n "$NAMESPACE" wait --for=jsonpath='{.status.phase}'=Succeeded trainingjob/cancer-rf-1 --timeout=15m
  local version
  version=$(kubectl -n "$NAMESPACE" get trainingjob cancer-rf-1 -o jsonpath='{.status.modelVersionRef.name}')
  kubectl -n "$NAMESPACE" wait --for=condition=Ready "modelversion/$version" --timeout=5m
  sed "s/name: cancer-rf-v1/name: $version/" examples/rollout.yaml | kubectl -n "$NAMESPACE" apply -f -
  kubectl -n "$NAMESPACE" wait --for=condition=Ready rollouts.slipway.dev/cancer-rf --timeout=10m
  kubectl -n "$NAMESPACE" get slipway
  cat <<EOF

slipway is up on kind-$CLUSTER; $version serves as InferenceService cancer-rf.
  kubectl slipway get rollout cancer-rf -n $NAMESPACE     # (pip install . puts kubectl-slipway on PATH)
  kubectl -n $NAMESPACE port-forward svc/cancer-rf-predictor 8080:80 &
  curl -s localhost:8080/v1/models/cancer-rf:predict -H 'content-type: application/json' \\
    -d '{"instances": [[17.99,10.38,122.8,1001,0.1184,0.2776,0.3001,0.1471,0.2419,0.07871,1.095,0.9053,8.589,153.4,0.006399,0.04904,0.05373,0.01587,0.03003,0.006193,25.38,17.33,184.6,2019,0.1622,0.6656,0.7119,0.2654,0.4601,0.1189]]}'
  hack/kind-up.sh down                                  # delete the cluster
EOF
}

main() {
  if [[ ${1:-up} == down ]]; then
    need kind
    kind delete cluster --name "$CLUSTER"
    return
  fi
  need docker kind kubectl helm
  cluster_up
  cert_manager
  kserve
  prometheus
  minio
  build_images
  slipway
  example
}

main "$@"
