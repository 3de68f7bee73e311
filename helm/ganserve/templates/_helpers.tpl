{{/*
Every name and label set is defined here, once.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "ganserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> (the release name alone when it already contains the chart name),
truncated for DNS (the component suffixes below still fit in 63 characters). */}}
{{- define "ganserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ganserve.triton.fullname" -}}
{{- printf "%s-triton" (include "ganserve.fullname" .) }}
{{- end }}

{{- define "ganserve.triton.headlessName" -}}
{{- printf "%s-triton-headless" (include "ganserve.fullname" .) }}
{{- end }}

{{- define "ganserve.gateway.fullname" -}}
{{- printf "%s-gateway" (include "ganserve.fullname" .) }}
{{- end }}

{{- define "ganserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "ganserve.labels" -}}
helm.sh/chart: {{ include "ganserve.chart" . }}
app.kubernetes.io/name: {{ include "ganserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ganserve
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "triton"). */}}
{{- define "ganserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ganserve.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "ganserve.triton.selectorLabels" -}}
{{ include "ganserve.selectorLabels" (dict "ctx" . "component" "triton") }}
{{- end }}

{{- define "ganserve.gateway.selectorLabels" -}}
{{ include "ganserve.selectorLabels" (dict "ctx" . "component" "gateway") }}
{{- end }}

{{- define "ganserve.triton.labels" -}}
{{ include "ganserve.labels" . }}
app.kubernetes.io/component: triton
{{- end }}

{{- define "ganserve.gateway.labels" -}}
{{ include "ganserve.labels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "ganserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ganserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images. */}}
{{- define "ganserve.triton.image" -}}
{{- $i := .Values.triton.image }}
{{- if $i.variant }}
{{- printf "%s:%s-%s" $i.repository $i.tag $i.variant }}
{{- else }}
{{- printf "%s:%s" $i.repository $i.tag }}
{{- end }}
{{- end }}

{{- define "ganserve.gateway.image" -}}
{{- printf "%s:%s" .Values.gateway.image.repository (.Values.gateway.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Where the gateway finds Triton's gRPC endpoint. */}}
{{- define "ganserve.tritonUrl" -}}
{{- .Values.gateway.tritonUrl | default (printf "%s:%v" (include "ganserve.triton.fullname" .) .Values.triton.ports.grpc) }}
{{- end }}

{{/* A value as an env var string. Helm reads every number in values as a float64, which prints
8388608 as 8.388608e+06: whole numbers are printed as integers. */}}
{{- define "ganserve.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq (floor .) . }}{{ int64 . | toString | quote }}{{ else }}{{ . | toString | quote }}{{ end }}
{{- else }}
{{- . | toString | quote }}
{{- end }}
{{- end }}

{{/* The gateway container's resources: gateway.resources, with the memory request (memoryBudgetMB Mi)
and limit (ceil(1.25 x memoryBudgetMB) Mi: room for what admission control does not see) filled in
where gateway.resources does not set them. */}}
{{- define "ganserve.gateway.resources" -}}
{{- $g := .Values.gateway }}
{{- $budget := int64 $g.memoryBudgetMB }}
{{- $resources := deepCopy ($g.resources | default dict) }}
{{- $requests := get $resources "requests" | default dict }}
{{- $limits := get $resources "limits" | default dict }}
{{- if not (hasKey $requests "memory") }}
{{- $_ := set $requests "memory" (printf "%dMi" $budget) }}
{{- end }}
{{- if not (hasKey $limits "memory") }}
{{- $_ := set $limits "memory" (printf "%dMi" (div (add (mul $budget 5) 3) 4)) }}
{{- end }}
{{- $_ := set $resources "requests" $requests }}
{{- $_ := set $resources "limits" $limits }}
{{- toYaml $resources }}
{{- end }}

{{/* An HTTP probe: call with (dict "path" "/healthz" "port" "http" "timing" .Values.x.probes.liveness). */}}
{{- define "ganserve.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{ toYaml .timing }}
{{- end }}

{{/* ---- Model repository (modelRepository.source) ------------------------------------------------ */}}

{{/* Fails with a clear message when the chosen source lacks what it needs. */}}
{{- define "ganserve.modelRepository.validate" -}}
{{- $m := .Values.modelRepository }}
{{- if and (eq $m.source "pvc") (not $m.pvc.claimName) }}
{{- fail "modelRepository.pvc.claimName is required with modelRepository.source=pvc (an existing PVC holding the model repository)" }}
{{- end }}
{{- if and (eq $m.source "objectStorage") (not $m.objectStorage.uri) }}
{{- fail "modelRepository.objectStorage.uri is required with modelRepository.source=objectStorage (e.g. s3://bucket/model_repository)" }}
{{- end }}
{{- end }}

{{/* The `models` volume of a pod, for the given component ("triton" or "gateway"); nothing when the
component's image already holds the models. Call with (dict "ctx" $ "component" "triton"). */}}
{{- define "ganserve.modelRepository.volume" -}}
{{- $m := .ctx.Values.modelRepository }}
{{- if eq $m.source "pvc" }}
- name: models
  persistentVolumeClaim:
    claimName: {{ $m.pvc.claimName }}
    readOnly: true
{{- else if or (eq $m.source "objectStorage") (and (eq $m.source "bundled") (eq .component "triton")) }}
- name: models
  emptyDir:
    sizeLimit: {{ $m.sizeLimit }}
{{- end }}
{{- end }}

{{/* The `models` volume mount (read-only), matching ganserve.modelRepository.volume. */}}
{{- define "ganserve.modelRepository.volumeMount" -}}
{{- $m := .ctx.Values.modelRepository }}
{{- if or (eq $m.source "pvc") (eq $m.source "objectStorage") (and (eq $m.source "bundled") (eq .component "triton")) }}
- name: models
  mountPath: /models
  readOnly: true
  {{- if and (eq $m.source "pvc") $m.pvc.subPath }}
  subPath: {{ $m.pvc.subPath }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Init containers that fill the `models` emptyDir. Call with (dict "ctx" $ "component" "triton"). */}}
{{- define "ganserve.modelRepository.initContainers" -}}
{{- $ctx := .ctx }}
{{- $m := $ctx.Values.modelRepository }}
{{- $securityContext := index $ctx.Values .component "securityContext" }}
{{- if and (eq $m.source "bundled") (eq .component "triton") }}
# The gateway image carries this repository's model_repository/ at /models: copy it for Triton.
- name: copy-models
  image: {{ include "ganserve.gateway.image" $ctx }}
  imagePullPolicy: {{ $ctx.Values.gateway.image.pullPolicy }}
  command: ["cp", "-R", "/models/.", "/mnt/models/"]
  securityContext:
    {{- toYaml $securityContext | nindent 4 }}
  resources:
    requests: {cpu: 100m, memory: 64Mi}
    limits: {memory: 256Mi}
  volumeMounts:
    - name: models
      mountPath: /mnt/models
{{- else if eq $m.source "objectStorage" }}
- name: fetch-models
  image: {{ printf "%s:%s" $m.objectStorage.image.repository $m.objectStorage.image.tag }}
  imagePullPolicy: {{ $m.objectStorage.image.pullPolicy }}
  command:
    {{- toYaml $m.objectStorage.command | nindent 4 }}
  env:
    - name: MODEL_REPOSITORY_URI
      value: {{ $m.objectStorage.uri | quote }}
    # Sync tools keep caches and config under $HOME: the root filesystem is read-only.
    - name: HOME
      value: /tmp
    {{- with $m.objectStorage.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $m.objectStorage.existingSecret }}
  envFrom:
    - secretRef:
        name: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $securityContext | nindent 4 }}
  resources:
    {{- toYaml $m.objectStorage.resources | nindent 4 }}
  volumeMounts:
    - name: models
      mountPath: /models
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}

{{/* API keys: the Secret holding the key file (an existing one, or the chart's), and where it is mounted. */}}
{{- define "ganserve.gateway.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "ganserve.gateway.fullname" .)) .Values.gateway.apiKeys.existingSecret }}
{{- end }}

{{- define "ganserve.gateway.apiKeysDir" -}}
/etc/ganserve/api-keys
{{- end }}

{{- define "ganserve.gateway.adminName" -}}
{{- printf "%s-admin" (include "ganserve.gateway.fullname" .) }}
{{- end }}

{{/* Combinations of the public-exposure values that cannot work, refused with what to change. */}}
{{- define "ganserve.gateway.validateAccess" -}}
{{- $g := .Values.gateway }}
{{- if and $g.apiKeys.enabled (not $g.apiKeys.existingSecret) (not $g.apiKeys.entries) }}
{{- fail "gateway.apiKeys.enabled needs the keys: gateway.apiKeys.existingSecret (a Secret holding the key file) or gateway.apiKeys.entries" }}
{{- end }}
{{- if and $g.apiKeys.enabled .Values.serviceMonitor.enabled (not $g.adminPort.enabled) }}
{{- fail "with gateway.apiKeys.enabled, /metrics on the public port needs a key: set gateway.adminPort.enabled=true so that Prometheus scrapes the admin port" }}
{{- end }}
{{- end }}
