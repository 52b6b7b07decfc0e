{{/*
The chart name, truncated to 63 characters (a label value's limit).
*/}}
{{- define "agentstack-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name that prefixes every object: `<release>-<chart>`, or the release name alone
when it already contains the chart name; truncated to 63 characters (a DNS label).
*/}}
{{- define "agentstack-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The name of one component's objects: `<fullname>-<component>`, within 63 characters.
The full name is shortened, never the suffix, so that names stay distinct.
Call with (dict "context" $ "component" "operator"); the component may carry more
suffixes ("operator-cluster").
*/}}
{{- define "agentstack-operator.componentName" -}}
{{- $room := sub 62 (len .component) | int }}
{{- printf "%s-%s" (include "agentstack-operator.fullname" .context | trunc $room | trimSuffix "-") .component }}
{{- end }}

{{/*
The `helm.sh/chart` label: `<chart>-<version>`.
*/}}
{{- define "agentstack-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of a release (Deployment selectors are immutable).
Call with (dict "context" $ "component" "operator"); component may be empty.
*/}}
{{- define "agentstack-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentstack-operator.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
Standard labels of every object: the selector labels plus version, manager and chart,
and the user's commonLabels. Call with (dict "context" $ "component" "operator").
*/}}
{{- define "agentstack-operator.labels" -}}
helm.sh/chart: {{ include "agentstack-operator.chart" .context }}
app.kubernetes.io/version: {{ .context.Values.image.tag | default .context.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
{{ include "agentstack-operator.stableLabels" . }}
{{- end }}

{{/*
The labels that stay the same from one chart version to the next: the in-chart Redis's
pod carries only these, so that an upgrade or a rollback of the chart does not restart
it (without persistence, a restart empties it).
*/}}
{{- define "agentstack-operator.stableLabels" -}}
{{ include "agentstack-operator.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: agentstack
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The image reference shared by the three Deployments (and the tick Jobs by default).
*/}}
{{- define "agentstack-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
ServiceAccount name of a component. Call with (dict "context" $ "component" "operator").
*/}}
{{- define "agentstack-operator.serviceAccountName" -}}
{{- $values := index .context.Values .component }}
{{- if $values.serviceAccount.create }}
{{- default (include "agentstack-operator.componentName" .) $values.serviceAccount.name }}
{{- else }}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" .component .component) $values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Redis ACL rules of the runners' and the API's own users, after their name and
password: the one place they are written. The in-chart Redis creates its users from
here; for an external Redis, README "Redis rights" shows the same rules to create.
- runner: every key of the product (all start with a hash tag, "{"), every command but
  the dangerous ones (FLUSHALL, KEYS, CONFIG, ACL, INFO, CLIENT KILL…) and the script
  cache's flush and kill, no pub/sub.
- api: reads every key of the product; writes only stacks' keys ("{namespace/name}:…")
  and the wake-up stream, so it can neither queue nor answer a tick, nor touch the
  marker or the LLM call slots; reads, writes and scripts only.
Call with "runner" or "api".
*/}}
{{- define "agentstack-operator.redisUserRules" -}}
{{- if eq . "runner" -}}
~{* resetchannels -@all +@all -@dangerous -script|flush -script|kill -function
{{- else if eq . "api" -}}
%R~{* ~{*/* ~{agentstack}:wakeups resetchannels -@all +@read +@write +@scripting +@connection +@transaction -@dangerous -script|flush -script|kill -function
{{- else -}}
{{- fail (printf "no Redis user rules for %q" .) -}}
{{- end -}}
{{- end }}

{{/*
The name of the in-chart Redis's user of a component (runner or api).
*/}}
{{- define "agentstack-operator.redisUserName" -}}
{{- printf "agentstack-%s" . -}}
{{- end }}

{{/*
The Secret of a component's own Redis user with an external Redis
(redis.users.<component>.existingSecret), or nothing. Read with dig: values reused from
a release older than redis.users (helm upgrade --reuse-values) have no such key.
Call with (dict "context" $ "component" "runner").
*/}}
{{- define "agentstack-operator.redisUserSecret" -}}
{{- if ne .component "operator" }}
{{- dig "users" .component "existingSecret" "" .context.Values.redis }}
{{- end }}
{{- end }}

{{/*
Where a process's Redis password is: "<Secret> <key>", or nothing (no password). The
operator's is the platform's; the runners' and the API's are their own users' where the
deployment gives them (always with the in-chart Redis; redis.users.<component>.
existingSecret with an external one). Call with (dict "context" $ "component" "runner").
*/}}
{{- define "agentstack-operator.redisPasswordRef" -}}
{{- $ := .context }}
{{- $own := include "agentstack-operator.redisUserSecret" . }}
{{- if $.Values.redis.standalone.enabled }}
{{- include "agentstack-operator.componentName" (dict "context" $ "component" "redis") }} {{ if eq .component "operator" }}redis{{ else }}{{ .component }}{{ end }}-password
{{- else if $own }}
{{- $own }} redis-password
{{- else if $.Values.redis.existingPasswordSecret }}
{{- $.Values.redis.existingPasswordSecret }} {{ $.Values.redis.existingPasswordSecretKey }}
{{- end }}
{{- end }}

{{/*
The Redis settings a process reads: REDIS_URL (inline or from a Secret), its user
(REDIS_USERNAME; the password as a file, REDIS_PASSWORD_FILE, read again at each new
connection so that a rotated password needs no restart, and as REDIS_PASSWORD, which
KEDA reads), AGENTSTACK_REDIS_CLUSTER, the Sentinels (REDIS_SENTINELS, their master's
name and password) and the confirmed commits (REDIS_WAIT_REPLICAS). Call with (dict
"context" $ "component" "api").
*/}}
{{- define "agentstack-operator.redisEnv" -}}
{{- $ := .context }}
{{- $password := include "agentstack-operator.redisPasswordRef" . | splitList " " }}
{{- if $.Values.redis.standalone.enabled }}
# The in-chart Redis, by its fully qualified name: tick Jobs in other namespaces use it too.
{{- $redis := include "agentstack-operator.componentName" (dict "context" $ "component" "redis") }}
- name: REDIS_URL
  value: {{ printf "redis://%s.%s.svc:6379/0" $redis $.Release.Namespace | quote }}
{{- if ne .component "operator" }}
- name: REDIS_USERNAME
  value: {{ include "agentstack-operator.redisUserName" .component | quote }}
{{- end }}
{{- else }}
{{- if $.Values.redis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.redis.existingSecret }}
      key: {{ $.Values.redis.existingSecretKey }}
{{- else }}
- name: REDIS_URL
  value: {{ required "redis.url or redis.existingSecret is required" $.Values.redis.url | quote }}
{{- end }}
{{- with include "agentstack-operator.redisUserSecret" . }}
- name: REDIS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: redis-username
{{- end }}
{{- end }}
{{- if eq (len $password) 2 }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ index $password 0 }}
      key: {{ index $password 1 }}
- name: REDIS_PASSWORD_FILE
  value: {{ include "agentstack-operator.redisPasswordPath" . }}
{{- end }}
- name: AGENTSTACK_REDIS_CLUSTER
  value: {{ $.Values.redis.cluster | toString | quote }}
{{- with $.Values.redis.sentinel.hosts }}
{{- if or $.Values.redis.cluster $.Values.redis.standalone.enabled }}
{{- fail "redis.sentinel.hosts cannot be combined with redis.cluster or redis.standalone.enabled" }}
{{- end }}
- name: REDIS_SENTINELS
  value: {{ join "," . | quote }}
- name: REDIS_SENTINEL_MASTER
  value: {{ $.Values.redis.sentinel.masterName | quote }}
{{- with $.Values.redis.sentinel.existingPasswordSecret }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.redis.sentinel.existingPasswordSecretKey }}
{{- end }}
{{- end }}
{{- if gt (int $.Values.redis.waitReplicas) 0 }}
{{- if $.Values.redis.cluster }}
{{- fail "redis.waitReplicas cannot be combined with redis.cluster" }}
{{- end }}
- name: REDIS_WAIT_REPLICAS
  value: {{ $.Values.redis.waitReplicas | toString | quote }}
- name: REDIS_WAIT_TIMEOUT_SECONDS
  value: {{ $.Values.redis.waitTimeoutSeconds | toString | quote }}
{{- end }}
{{- end }}

{{/*
The file a process reads its Redis password from (the volume below, mounted).
*/}}
{{- define "agentstack-operator.redisPasswordPath" -}}
/var/run/secrets/agentstack/redis/password
{{- end }}

{{/*
A process's Redis password as a volume and its mount: the kubelet rewrites the file
when the Secret changes. Call with (dict "context" $ "component" "runner" "part"
"volume") or "part" "mount"; nothing when the process has no password.
*/}}
{{- define "agentstack-operator.redisPasswordVolume" -}}
{{- $password := include "agentstack-operator.redisPasswordRef" . | splitList " " }}
{{- if eq (len $password) 2 }}
{{- if eq .part "volume" }}
- name: redis-password
  secret:
    secretName: {{ index $password 0 }}
    items:
      - key: {{ index $password 1 }}
        path: password
{{- else }}
- name: redis-password
  mountPath: {{ include "agentstack-operator.redisPasswordPath" . | dir }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod settings the three Deployments share: image pull secrets, security context,
scheduling. Call with (dict "context" $ "component" "operator").
*/}}
{{- define "agentstack-operator.podScheduling" -}}
{{- $values := index .context.Values .component }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The two HTTP probes of a container, on its named port. Call with
(dict "values" .Values.operator "port" "metrics").
*/}}
{{- define "agentstack-operator.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  {{- toYaml .values.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  {{- toYaml .values.readinessProbe | nindent 2 }}
{{- end }}

{{/*
Where RBAC grants the namespaced permissions: "" (cluster-wide) or the watched namespaces.
*/}}
{{- define "agentstack-operator.watchNamespaces" -}}
{{- join "," .Values.watchNamespaces }}
{{- end }}

{{/*
A binding of a component's ServiceAccount to the role `name`: a RoleBinding in
`namespace`, or a ClusterRoleBinding when `namespace` is empty. Call with
(dict "context" $ "component" "operator" "name" $name "namespace" "" "roleKind" "Role");
roleKind defaults to ClusterRole.
*/}}
{{- define "agentstack-operator.binding" -}}
{{- $component := dict "context" .context "component" .component }}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ if .namespace }}RoleBinding{{ else }}ClusterRoleBinding{{ end }}
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "agentstack-operator.labels" $component | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .roleKind | default "ClusterRole" }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "agentstack-operator.serviceAccountName" $component }}
    namespace: {{ .context.Release.Namespace }}
{{- end }}

{{/*
Grants the ClusterRole `name` (namespaced permissions) where the stacks are: one
ClusterRoleBinding when watchNamespaces is empty (every namespace of the cluster), else a
RoleBinding in each watched namespace and nowhere else. Each document starts with `---`.
Call with (dict "context" $ "component" "runner" "name" $name).
*/}}
{{- define "agentstack-operator.watchedBindings" -}}
{{- range .context.Values.watchNamespaces | default (list "") }}
---
{{ include "agentstack-operator.binding" (dict "context" $.context "component" $.component "name" $.name "namespace" .) }}
{{- end }}
{{- end }}

{{/*
Names of the image pull secrets of the tick Jobs, joined with commas:
operator.jobExecutor.imagePullSecrets, else the names of the top-level imagePullSecrets.
*/}}
{{- define "agentstack-operator.jobImagePullSecrets" -}}
{{- $names := .Values.operator.jobExecutor.imagePullSecrets }}
{{- if not $names }}
{{- range .Values.imagePullSecrets }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}
{{- join "," $names }}
{{- end }}

{{/*
`AGENTSTACK_ALLOWED_BASE_URLS` of the operator and the runners (the same list: the
operator checks each spec by the rule the runners enforce); nothing when the list is
empty.
*/}}
{{- define "agentstack-operator.allowedBaseURLsEnv" -}}
{{- with .Values.llm.allowedBaseURLs }}
# Endpoints besides the providers' public ones that the platform's keys may go to.
- name: AGENTSTACK_ALLOWED_BASE_URLS
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}

{{/*
`AGENTSTACK_PRICES` of the operator (passed on to tick Jobs) and the runners: an existing
ConfigMap's `prices.yaml` key, or the `llm.prices` value; nothing when neither is set (the
built-in prices apply).
*/}}
{{- define "agentstack-operator.pricesEnv" -}}
{{- if .Values.llm.pricesConfigMap }}
# Prices of LLM models (USD per million tokens) added to or replacing the built-in ones.
- name: AGENTSTACK_PRICES
  valueFrom:
    configMapKeyRef:
      name: {{ .Values.llm.pricesConfigMap | quote }}
      key: prices.yaml
{{- else if .Values.llm.prices }}
# Prices of LLM models (USD per million tokens) added to or replacing the built-in ones.
- name: AGENTSTACK_PRICES
  value: {{ toJson .Values.llm.prices | quote }}
{{- end }}
{{- end }}

{{/*
OpenTelemetry settings of the operator and the runners (tick Jobs get them from the
operator): nothing unless `tracing.otlpEndpoint` is set, and tracing is then off.
*/}}
{{- define "agentstack-operator.tracingEnv" -}}
{{- with .Values.tracing.otlpEndpoint }}
# Traces of ticks, by OTLP/HTTP (docs/tracing.md).
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: AGENTSTACK_TRACE_CONTENT
  value: {{ $.Values.tracing.recordContent | toString | quote }}
{{- with $.Values.tracing.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with $.Values.tracing.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
