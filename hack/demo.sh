#!/usr/bin/env bash
# The demo for now: local control plane up (make cluster-up did that), the operator running in the
# background, every example applied, and what slipway reports about them.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=.demo
mkdir -p "$DEMO"
KUBECONFIG="$(PYTHONPATH=hack .venv/bin/python -m localcluster kubeconfig)"
export KUBECONFIG PATH="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}:$PATH"

if [[ -f $DEMO/operator.pid ]] && kill -0 "$(cat $DEMO/operator.pid)" 2>/dev/null; then
  echo "operator already running (pid $(cat $DEMO/operator.pid))"
else
  SLIPWAY_HTTP_HOST=127.0.0.1 SLIPWAY_HTTP_PORT=18080 nohup .venv/bin/python -m slipway >"$DEMO/operator.log" 2>&1 &
  echo $! >"$DEMO/operator.pid"
  echo "operator started (pid $!, log $DEMO/operator.log)"
fi
for _ in $(seq 60); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 1; done
curl -sf http://127.0.0.1:18080/readyz >/dev/null || { tail -30 "$DEMO/operator.log"; exit 1; }

kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n demo apply -f examples/
echo "waiting for the operator to report on every object..."
for _ in $(seq 30); do
  pending=$(kubectl -n demo get trainingjobs,modelversions,rollouts,driftmonitors \
    -o jsonpath='{range .items[*]}{.metadata.name}{"="}{.status.observedGeneration}{"\n"}{end}' | grep -c '=$' || true)
  [[ $pending == 0 ]] && break
  sleep 1
done
echo
kubectl get slipway -A
echo
kubectl -n demo get modelversion cancer-rf-v1 -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}'
echo
echo "Use it: export KUBECONFIG=$KUBECONFIG PATH=${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}:\$PATH; kubectl get slipway -A   (stop: make demo-down)"
