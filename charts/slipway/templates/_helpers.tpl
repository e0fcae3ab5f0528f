{{/* Names and labels shared by every template. */}}

{{- define "slipway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's object name prefix: the release name, with the chart name appended unless it already holds it. */}}
{{- define "slipway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 57 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "slipway.drift.fullname" -}}
{{- printf "%s-drift" (include "slipway.fullname" .) -}}
{{- end -}}

{{- define "slipway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "slipway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "slipway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "slipway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slipway
{{- end -}}

{{/* Pod template labels: the selector's plus the chart's, without repeating a key. */}}
{{- define "slipway.podLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: slipway
{{- end -}}

{{- define "slipway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slipway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "slipway.drift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slipway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: drift
{{- end -}}

{{- define "slipway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "slipway.drift.image" -}}
{{- printf "%s:%s" .Values.drift.image.repository (default .Chart.AppVersion .Values.drift.image.tag) -}}
{{- end -}}

{{- define "slipway.drift.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "slipway.drift.fullname" .) .Release.Namespace (int .Values.service.port) -}}
{{- end -}}

{{/* The namespaces that get a Role and RoleBinding (namespaced mode); fails early on an empty list. */}}
{{- define "slipway.watchNamespaces" -}}
{{- if not .Values.watch.clusterWide -}}
{{- if not .Values.watch.namespaces -}}
{{- fail "watch.namespaces must name at least one namespace when watch.clusterWide is false" -}}
{{- end -}}
{{- join "," (uniq .Values.watch.namespaces) -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for both containers. */}}
{{- define "slipway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "slipway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* An operator shard's names and labels, from (dict "root" $ "shard" name); shard "" is the default shard, whose
objects keep the unsharded names and labels. A named shard's pods are component operator-shard, so no two
Deployments' selectors overlap. */}}
{{- define "slipway.operator.fullname" -}}
{{- if .shard -}}
{{- printf "%s-shard-%s" (include "slipway.fullname" .root) .shard -}}
{{- else -}}
{{- include "slipway.fullname" .root -}}
{{- end -}}
{{- end -}}

{{- define "slipway.operator.shardLabels" -}}
{{- if .shard -}}
app.kubernetes.io/component: operator-shard
slipway.dev/shard: {{ .shard }}
{{- else -}}
app.kubernetes.io/component: operator
{{- end -}}
{{- end -}}

{{- define "slipway.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slipway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{ include "slipway.operator.shardLabels" . }}
{{- end -}}
