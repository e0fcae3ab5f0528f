#!/usr/bin/env bash
# The demo for now: local control plane up (make cluster-up did that), the operator running in the
# background, every example applied, and what slipway reports about them.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=.demo
mkdir -p "$DEMO"
KUBECONFIG="$(PYTHONPATH=hack .venv/bin/python -m localcluster kubeconfig)"
export KUBECONFIG PATH="${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}:$PATH"

S3=http://127.0.0.1:19000
running() { [[ -f $DEMO/$1.pid ]] && kill -0 "$(cat "$DEMO/$1.pid")" 2>/dev/null; }

# A real S3-compatible server (moto in server mode) for artifacts, with the bucket the examples use.
if ! running s3; then
  nohup .venv/bin/python -m moto.server -H 127.0.0.1 -p 19000 >"$DEMO/s3.log" 2>&1 &
  echo $! >"$DEMO/s3.pid"
  echo "S3 server started on $S3 (pid $!)"
fi
for _ in $(seq 30); do curl -sf "$S3" >/dev/null && break; sleep 0.5; done
AWS_ACCESS_KEY_ID=slipway AWS_SECRET_ACCESS_KEY=slipway-secret .venv/bin/python -c "
import boto3
s3 = boto3.client('s3', endpoint_url='$S3', region_name='us-east-1')
if 'models' not in [b['Name'] for b in s3.list_buckets()['Buckets']]:
    s3.create_bucket(Bucket='models')"

if running operator; then
  echo "operator already running (pid $(cat $DEMO/operator.pid))"
else
  SLIPWAY_S3_ENDPOINT=$S3 SLIPWAY_HTTP_HOST=127.0.0.1 SLIPWAY_HTTP_PORT=18080 \
    nohup .venv/bin/python -m slipway >"$DEMO/operator.log" 2>&1 &
  echo $! >"$DEMO/operator.pid"
  echo "operator started (pid $!, log $DEMO/operator.log)"
fi
for _ in $(seq 60); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 1; done
curl -sf http://127.0.0.1:18080/readyz >/dev/null || { tail -30 "$DEMO/operator.log"; exit 1; }

kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n demo apply -f examples/s3-credentials.yaml -f examples/trainingjob-sklearn.yaml
echo "training cancer-rf (scikit-learn, breast_cancer) through the local executor..."
for _ in $(seq 120); do
  phase=$(kubectl -n demo get trainingjob cancer-rf-1 -o jsonpath='{.status.phase}')
  echo "  $(date +%T) phase=${phase:-Pending} $(kubectl -n demo get trainingjob cancer-rf-1 \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"
  [[ $phase == Succeeded || $phase == Failed ]] && break
  sleep 2
done
mv=$(kubectl -n demo get trainingjob cancer-rf-1 -o jsonpath='{.status.modelVersionRef.name}')
for _ in $(seq 30); do
  [[ -n $mv && $(kubectl -n demo get modelversion "$mv" -o jsonpath='{.status.conditions[?(@.type=="Verified")].status}') == True ]] && break
  sleep 1
done
# Serve it: a Rollout puts the version behind a KServe InferenceService (played here by the local gateway).
kubectl -n demo apply -f runtimes/predictor/servingruntime.yaml -f examples/rollout.yaml -f examples/driftmonitor.yaml >/dev/null
echo "rolling out $mv..."
for _ in $(seq 90); do
  [[ $(kubectl -n demo get rollout cancer-rf -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]] && break
  sleep 2
done
row=$(.venv/bin/python -c "from sklearn.datasets import load_breast_cancer; print(list(load_breast_cancer().data[0]))")
echo "a prediction through the gateway (Host: cancer-rf.demo.example.com):"
curl -s -H "Host: cancer-rf.demo.example.com" -H "content-type: application/json" \
  -d "{\"instances\": [$row]}" http://127.0.0.1:18081/v1/models/cancer-rf:predict; echo
echo
kubectl get slipway -A
if [[ -n $mv ]]; then
  echo
  echo "ModelVersion $mv:"
  kubectl -n demo get modelversion "$mv" -o jsonpath='{range .status.conditions[*]}  {.type}={.status} ({.reason}) {.message}{"\n"}{end}'
  echo "  lineage: $(kubectl -n demo get modelversion "$mv" -o jsonpath='{.spec.lineage}')"
fi
echo
echo "Use it: export KUBECONFIG=$KUBECONFIG PATH=${SLIPWAY_BIN:-$HOME/.cache/slipway/bin}:\$PATH; kubectl get slipway -A   (stop: make demo-down)"
