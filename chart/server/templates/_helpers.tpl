{{/*
Named templates of the aurora-server chart (same conventions as chart/agent).
*/}}

{{/* Chart name, or nameOverride. Also the value of the `app` label. */}}
{{- define "aurora-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects: fullnameOverride, else the release name when it already contains
the chart name, else <release>-<name>. Truncated to 63 characters (DNS label).
*/}}
{{- define "aurora-server.fullname" -}}
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

{{- define "aurora-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the pod selector (immutable once installed). */}}
{{- define "aurora-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aurora-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aurora-server.labels" -}}
helm.sh/chart: {{ include "aurora-server.chart" . }}
{{ include "aurora-server.selectorLabels" . }}
app: {{ include "aurora-server.name" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: aurora
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "aurora-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aurora-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aurora-server.configMapName" -}}
{{- printf "%s-config" (include "aurora-server.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aurora-server.pvcName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-data" (include "aurora-server.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{- define "aurora-server.image" -}}
{{- $img := .Values.image }}
{{- $repo := $img.repository }}
{{- if $img.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" $img.registry) $repo }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (toString ($img.tag | default .Chart.AppVersion)) }}
{{- end }}
{{- end }}

{{/* "true" when more than one server process may run at once. */}}
{{- define "aurora-server.multi" -}}
{{- if or .Values.autoscaling.enabled (gt (int64 .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The port the probes and the ServiceMonitor use: "ops" or "https". */}}
{{- define "aurora-server.opsPortName" -}}
{{- if gt (int64 .Values.ops.port) 0 }}ops{{ else }}https{{ end }}
{{- end }}

{{/* HTTP scheme of /health, /ready and /metrics. */}}
{{- define "aurora-server.opsScheme" -}}
{{- if or (gt (int64 .Values.ops.port) 0) .Values.tls.plainHttp }}HTTP{{ else }}HTTPS{{ end }}
{{- end }}

{{/*
Environment variables the chart sets itself: config and secretEnv may not set them.
*/}}
{{- define "aurora-server.reservedEnv" -}}
AURORA_ENV AURORA_PORT AURORA_BIND AURORA_OPS_PORT AURORA_OPS_BIND AURORA_DATA_DIR AURORA_PLAIN_HTTP AURORA_TLS_TERMINATED_BY_PROXY AURORA_TLS_CERT AURORA_TLS_KEY AURORA_INTERNAL_ADDR AURORA_MASTER_KEY_FILE POD_IP SECRETS_BACKEND VAULT_ADDR VAULT_AUTH_METHOD VAULT_K8S_ROLE VAULT_K8S_JWT_PATH VAULT_KV_MOUNT VAULT_PREFIX VAULT_CACERT AWS_SM_REGION AWS_SM_ENDPOINT
{{- end }}

{{/*
Secret settings of the server (config_def entries marked secret) and of its connectors:
never in the ConfigMap. Besides this list, every name containing SECRET or PASSWORD or
ending in _TOKEN or _KEY is taken for a secret.
*/}}
{{- define "aurora-server.secretEnvNames" -}}
DATABASE_URL AURORA_REDIS_URL AURORA_INTERNAL_FORWARD_SECRET AURORA_MASTER_KEY INTERNAL_API_SECRET VAULT_TOKEN AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN GITHUB_APP_WEBHOOK_SECRET GITHUB_APP_WEBHOOK_SECRET_PREVIOUS GH_OAUTH_CLIENT_SECRET SLACK_CLIENT_SECRET SLACK_SIGNING_SECRET PAGERDUTY_CLIENT_SECRET ATLASSIAN_CLIENT_SECRET BB_OAUTH_CLIENT_SECRET GOOGLE_CHAT_CLIENT_SECRET GOOGLE_CHAT_SERVICE_ACCOUNT_KEY CLIENT_SECRET AZURE_CLIENT_SECRET OVH_EU_CLIENT_SECRET OVH_CA_CLIENT_SECRET OVH_US_CLIENT_SECRET
{{- end }}

{{- define "aurora-server.isSecretName" -}}
{{- if or (has . (splitList " " (include "aurora-server.secretEnvNames" nil))) (regexMatch "SECRET|PASSWORD|_TOKEN$|_KEY$" .) }}true{{ end }}
{{- end }}

{{/*
Checks what values.schema.json cannot express; fails the render with a message naming the
value to set.
*/}}
{{- define "aurora-server.validate" -}}
{{- $se := .Values.secretEnv | default dict }}
{{- $multi := include "aurora-server.multi" . }}
{{- $reserved := splitList " " (include "aurora-server.reservedEnv" .) }}
{{- range $name, $v := .Values.config }}
{{- if has $name $reserved }}
{{- fail (printf "config.%s is set by the chart (from environment, ops, tls, persistence or secretsBackend values): set that value instead" $name) }}
{{- end }}
{{- if include "aurora-server.isSecretName" $name }}
{{- fail (printf "config.%s is a secret: the ConfigMap never holds secrets. Put it in a Secret and set secretEnv.%s: {secretName: <Secret>, key: <key>}" $name $name) }}
{{- end }}
{{- if hasKey $se $name }}
{{- fail (printf "%s is in both config and secretEnv: keep one" $name) }}
{{- end }}
{{- end }}
{{- range $name, $_ := $se }}
{{- if has $name $reserved }}
{{- fail (printf "secretEnv.%s is set by the chart (from environment, ops, tls, persistence or secretsBackend values): set that value instead" $name) }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if or (has .name $reserved) (hasKey $se .name) (hasKey $.Values.config .name) }}
{{- fail (printf "extraEnv %s is already set by the chart, config or secretEnv" .name) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.environment "production") (not (hasKey $se "INTERNAL_API_SECRET")) }}
{{- fail "secretEnv.INTERNAL_API_SECRET is required: AURORA_ENV=production refuses the development default. Create a Secret (openssl rand -hex 32) and set secretEnv.INTERNAL_API_SECRET: {secretName: <Secret>, key: <key>}" }}
{{- end }}
{{- $sqlite := not (hasKey $se "DATABASE_URL") }}
{{- if and $multi $sqlite }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs PostgreSQL: SQLite is single-process. Set secretEnv.DATABASE_URL to a Secret holding postgres://..." }}
{{- end }}
{{- if and $multi (not (hasKey $se "AURORA_REDIS_URL")) }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling.enabled) needs Redis: the replicas share their agent sessions there. Set secretEnv.AURORA_REDIS_URL to a Secret holding redis://..." }}
{{- end }}
{{- if and (hasKey $se "AURORA_REDIS_URL") (not (hasKey $se "AURORA_INTERNAL_FORWARD_SECRET")) }}
{{- fail "secretEnv.AURORA_REDIS_URL needs secretEnv.AURORA_INTERNAL_FORWARD_SECRET (at least 32 characters, the same for every replica): replicas forward commands to each other with it" }}
{{- end }}
{{- if and $multi .Values.persistence.enabled }}
{{- fail "persistence.enabled with more than one replica: the ReadWriteOnce data volume cannot be shared; with PostgreSQL the data directory needs no persistence" }}
{{- end }}
{{- if and $sqlite (not .Values.persistence.enabled) }}
{{- fail "SQLite (no secretEnv.DATABASE_URL) keeps the state in AURORA_DATA_DIR: set persistence.enabled=true, or set secretEnv.DATABASE_URL for PostgreSQL" }}
{{- end }}
{{- $b := .Values.secretsBackend }}
{{- if and (eq $b.type "local") (not (hasKey $se "AURORA_MASTER_KEY")) (not .Values.persistence.enabled) }}
{{- fail "secretsBackend.type local without persistence: the master key file would be lost with the pod. Set secretEnv.AURORA_MASTER_KEY (openssl rand -hex 32 in a Secret), or use vault or aws_secrets_manager" }}
{{- end }}
{{- if eq $b.type "vault" }}
{{- $_ := required "secretsBackend.vault.addr is required with secretsBackend.type vault (VAULT_ADDR, e.g. https://vault.vault.svc:8200)" $b.vault.addr }}
{{- if and (eq $b.vault.authMethod "kubernetes") (not $b.vault.role) }}
{{- fail "secretsBackend.vault.role is required with authMethod kubernetes (VAULT_K8S_ROLE: the Vault role bound to this ServiceAccount)" }}
{{- end }}
{{- if and (eq $b.vault.authMethod "token") (not (hasKey $se "VAULT_TOKEN")) }}
{{- fail "secretsBackend.vault.authMethod token needs secretEnv.VAULT_TOKEN (or use authMethod kubernetes)" }}
{{- end }}
{{- end }}
{{- if eq $b.type "aws_secrets_manager" }}
{{- $_ := required "secretsBackend.aws.region is required with secretsBackend.type aws_secrets_manager (AWS_SM_REGION)" $b.aws.region }}
{{- if not (and (hasKey $se "AWS_ACCESS_KEY_ID") (hasKey $se "AWS_SECRET_ACCESS_KEY")) }}
{{- fail "secretsBackend.type aws_secrets_manager needs secretEnv.AWS_ACCESS_KEY_ID and secretEnv.AWS_SECRET_ACCESS_KEY (the server signs with static keys; it does not read IRSA web identity tokens)" }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts.api) }}
{{- fail "ingress.hosts.api is required with ingress.enabled (the backend's public host, e.g. api.aurora.example.com)" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (set the other to null)" }}
{{- end }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int64 .Values.autoscaling.minReplicas) (int64 .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is larger than autoscaling.maxReplicas" }}
{{- end }}
{{- if and (gt (int64 .Values.ops.port) 0) (eq (int64 .Values.ops.port) 5080) }}
{{- fail "ops.port must differ from 5080 (the main port)" }}
{{- end }}
{{- end }}

{{/* initialDelaySeconds, periodSeconds, ... of a probe value block (without "enabled"). */}}
{{- define "aurora-server.probeTimings" -}}
{{- $out := dict }}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $ $k }}
{{- $_ := set $out $k (int64 (get $ $k)) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* A number (printed as an integer) or a quoted string such as "50%". */}}
{{- define "aurora-server.intOrString" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ int64 . }}{{ end }}
{{- end }}

{{/* A config value as the text the server reads (integers without exponent). */}}
{{- define "aurora-server.configValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}
