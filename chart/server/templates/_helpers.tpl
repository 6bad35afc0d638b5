{{/*
Named templates of the aurora-server chart.
*/}}

{{/* Chart name, or nameOverride. Also the value of the `app` label. */}}
{{- define "aurora-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* fullnameOverride, else the release name when it contains the chart name, else <release>-<name>. */}}
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

{{- define "aurora-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aurora-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aurora-server.labels" -}}
{{- include "aurora-server.labelsWith" (dict "ctx" . "extra" dict) }}
{{- end }}

{{/*
The labels of every object plus "extra" (an object's own labels: a Deployment's labels, the
pods' podLabels), as one map: the chart's labels, then commonLabels, then extra, each
overriding the one before, then the selector labels (which validate keeps out of the others).
Printing the maps one after the other instead rendered a key given twice as a duplicate YAML
key, which the API server refuses.
*/}}
{{- define "aurora-server.labelsWith" -}}
{{- $c := .ctx }}
{{- $l := dict "helm.sh/chart" (printf "%s-%s" $c.Chart.Name $c.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-") "app" (include "aurora-server.name" $c) "app.kubernetes.io/version" ($c.Values.image.tag | default $c.Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | toString) "app.kubernetes.io/component" "server" "app.kubernetes.io/part-of" "aurora" "app.kubernetes.io/managed-by" $c.Release.Service }}
{{- $l = mustMergeOverwrite $l (deepCopy ($c.Values.commonLabels | default dict)) (deepCopy (.extra | default dict)) (include "aurora-server.selectorLabels" $c | fromYaml) }}
{{- toYaml $l }}
{{- end }}

{{/* The pod selector's keys are the chart's: a user label with one of them would leave the pods
unselected by the Deployment (whose selector is immutable), the Service and the policies. */}}
{{- define "aurora-server.validateLabels" -}}
{{- range $key, $m := dict "commonLabels" .Values.commonLabels "labels" .Values.labels "podLabels" .Values.podLabels }}
{{- range $sel := list "app.kubernetes.io/name" "app.kubernetes.io/instance" }}
{{- if hasKey ($m | default dict) $sel }}
{{- fail (printf "%s: %s is a key of the pods' selector, set by the chart; remove it (the Deployment's selector cannot change and must match its pods)" $key $sel) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aurora-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aurora-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aurora-server.image" -}}
{{- $i := .Values.image }}
{{- $repo := $i.repository }}
{{- with $i.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end }}
{{- if $i.digest }}
{{- printf "%s@%s" $repo $i.digest }}
{{- else }}
{{- printf "%s:%s" $repo (toString ($i.tag | default .Chart.AppVersion)) }}
{{- end }}
{{- end }}

{{/* A config entry that names a Secret key: {secretKeyRef: {name, key}} with both set. */}}
{{- define "aurora-server.isSecretRef" -}}
{{- if and (kindIs "map" .) (hasKey . "secretKeyRef") }}{{ with .secretKeyRef }}{{ if and .name .key }}true{{ end }}{{ end }}{{ end }}
{{- end }}

{{/* A config entry given a value: a non-empty scalar, or a Secret reference. */}}
{{- define "aurora-server.isSet" -}}
{{- if kindIs "map" . }}{{ include "aurora-server.isSecretRef" . }}{{ else if not (kindIs "invalid" .) }}{{ if ne (toString .) "" }}true{{ end }}{{ end }}
{{- end }}

{{/* A scalar as the environment sees it: integers without exponent, booleans as true/false. */}}
{{- define "aurora-server.scalar" -}}
{{- if kindIs "float64" . }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/*
Settings the chart sets from other values, refused in config (name -> the value to use).
*/}}
{{- define "aurora-server.managed" -}}
AURORA_PORT: port
AURORA_BIND: the chart (0.0.0.0)
AURORA_OPS_PORT: opsPort
AURORA_OPS_BIND: the chart (0.0.0.0)
AURORA_DATA_DIR: the chart (/var/lib/aurora)
AURORA_TLS_CERT: tls.existingSecret
AURORA_TLS_KEY: tls.existingSecret
AURORA_TLS_TICKET_KEY_FILE: tls.ticketKeySecret
AURORA_PLAIN_HTTP: tls.enabled
AURORA_TLS_TERMINATED_BY_PROXY: tls.enabled
SECRETS_BACKEND: secretsBackend.type
AURORA_MASTER_KEY: secretsBackend.local.masterKey
AURORA_MASTER_KEY_FILE: the chart (the data directory)
VAULT_ADDR: secretsBackend.vault.addr
VAULT_TOKEN: secretsBackend.vault.token
VAULT_AUTH_METHOD: secretsBackend.vault.authMethod
VAULT_K8S_ROLE: secretsBackend.vault.role
VAULT_K8S_JWT_PATH: secretsBackend.vault.serviceAccountToken
VAULT_KV_MOUNT: secretsBackend.vault.kvMount
VAULT_PREFIX: secretsBackend.vault.prefix
VAULT_CACERT: secretsBackend.vault.caBundle
AWS_SM_REGION: secretsBackend.aws.region
AWS_SM_ENDPOINT: secretsBackend.aws.endpoint
AWS_SM_STS_ENDPOINT: secretsBackend.aws.stsEndpoint
AWS_ROLE_ARN: secretsBackend.aws.roleArn
AWS_WEB_IDENTITY_TOKEN_FILE: the chart (IRSA's projected token)
AURORA_INTERNAL_ADDR: the chart (the pod IP and internalPort)
AURORA_INTERNAL_PORT: internalPort
AURORA_SHUTDOWN_DRAIN_S: lifecycle.shutdownDrainSeconds
AURORA_TRUSTED_PROXIES: trustedProxies
POD_IP: the chart (status.podIP, for AURORA_INTERNAL_ADDR)
{{- end }}

{{/* The IAM role of IRSA: secretsBackend.aws.roleArn, else the ServiceAccount's
eks.amazonaws.com/role-arn annotation given in serviceAccount.annotations. */}}
{{- define "aurora-server.awsRoleArn" -}}
{{- if eq .Values.secretsBackend.type "aws_secrets_manager" }}
{{- .Values.secretsBackend.aws.roleArn | default (get (.Values.serviceAccount.annotations | default dict) "eks.amazonaws.com/role-arn") }}
{{- end }}
{{- end }}

{{/* AWS Secrets Manager through IRSA's web identity (no static keys in config). */}}
{{- define "aurora-server.awsWebIdentity" -}}
{{- if and (include "aurora-server.awsRoleArn" .) (not (include "aurora-server.isSecretRef" .Values.config.AWS_ACCESS_KEY_ID)) }}true{{ end }}
{{- end }}

{{/* SQLite: no DATABASE_URL in config. */}}
{{- define "aurora-server.sqlite" -}}
{{- if not (include "aurora-server.isSet" .Values.config.DATABASE_URL) }}true{{ end }}
{{- end }}

{{/* Whether the data directory must outlive the pod: it holds the SQLite
     database, or the local secrets backend's store (secrets.db, the stored
     connector credentials), whatever the state database is. */}}
{{- define "aurora-server.persistData" -}}
{{- if and .Values.persistence.enabled (or (include "aurora-server.sqlite" .) (eq .Values.secretsBackend.type "local")) }}true{{ end }}
{{- end }}

{{/* The replicas' own listener (internalPort) when the pods are replicas (Redis) and it is
not 0; "" otherwise. */}}
{{- define "aurora-server.internalPort" -}}
{{- if and (include "aurora-server.isSet" .Values.config.AURORA_REDIS_URL) (ne (int64 .Values.internalPort) 0) }}{{ int64 .Values.internalPort }}{{ end }}
{{- end }}

{{/* The port the other replicas forward commands to: internalPort, else port. */}}
{{- define "aurora-server.peerPort" -}}
{{- include "aurora-server.internalPort" . | default (int64 .Values.port) }}
{{- end }}

{{/* Most replicas that may run: replicaCount, or the autoscaler's maximum. */}}
{{- define "aurora-server.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int64 .Values.autoscaling.maxReplicas }}{{ else }}{{ int64 .Values.replicaCount }}{{ end }}
{{- end }}

{{/* "true" when the chart makes a PodDisruptionBudget: podDisruptionBudget.enabled, or when
it is null (the default), whenever more than one replica may run. */}}
{{- define "aurora-server.pdbEnabled" -}}
{{- $e := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "invalid" $e }}{{ if gt (int64 (include "aurora-server.maxReplicas" .)) 1 }}true{{ end }}{{ else if $e }}true{{ end }}
{{- end }}

{{/* The checks no JSON schema can say; every template includes them once (deployment.yaml). */}}
{{- define "aurora-server.validate" -}}
{{- include "aurora-server.validateLabels" . }}
{{- $cfg := .Values.config }}
{{- $managed := include "aurora-server.managed" . | fromYaml }}
{{- range $name, $v := $cfg }}
{{- if hasKey $managed $name }}
{{- fail (printf "config.%s is set by the chart (from %s)" $name (get $managed $name)) }}
{{- end }}
{{- if and (kindIs "string" $v) (ne $v "") (regexMatch "(SECRET|_TOKEN|PASSWORD|_KEY)$" $name) }}
{{- fail (printf "config.%s looks like a secret: give {secretKeyRef: {name: <Secret>, key: <key>}} of an existing Secret, never the value" $name) }}
{{- end }}
{{- if and (kindIs "map" $v) $v (not (include "aurora-server.isSecretRef" $v)) }}
{{- fail (printf "config.%s: secretKeyRef needs name and key" $name) }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if or (hasKey $managed .name) (hasKey $cfg .name) }}
{{- fail (printf "extraEnv %s: set it under config (or the chart value that sets it)" .name) }}
{{- end }}
{{- end }}
{{- $max := int64 (include "aurora-server.maxReplicas" .) }}
{{- if and (gt $max 1) (include "aurora-server.sqlite" .) }}
{{- fail (printf "%d replicas need PostgreSQL: set config.DATABASE_URL (secretKeyRef). SQLite is a single process: keep replicaCount 1 and autoscaling off without it" $max) }}
{{- end }}
{{- if and (gt $max 1) (not (include "aurora-server.isSet" $cfg.AURORA_REDIS_URL)) }}
{{- fail (printf "%d replicas need Redis: set config.AURORA_REDIS_URL (secretKeyRef); the replicas find the one holding an agent's tunnel through it" $max) }}
{{- end }}
{{- if include "aurora-server.isSet" $cfg.AURORA_REDIS_URL }}
{{- if (include "aurora-server.sqlite" .) }}
{{- fail "config.AURORA_REDIS_URL joins replicas that share PostgreSQL: set config.DATABASE_URL too (SQLite is a single process)" }}
{{- end }}
{{- if not (include "aurora-server.isSecretRef" $cfg.AURORA_INTERNAL_FORWARD_SECRET) }}
{{- fail "config.AURORA_INTERNAL_FORWARD_SECRET is required with config.AURORA_REDIS_URL: {secretKeyRef: {name, key}} of a secret of at least 32 characters, the same for every replica" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (not (include "aurora-server.isSet" $cfg.AURORA_INTERNAL_CA_FILE)) }}
{{- fail "replicas with TLS in the pod need tls.existingSecret (a certificate they share and verify each other against before forwarding a command), or config.AURORA_INTERNAL_CA_FILE: with per-pod self-signed certificates a replica could not tell an impostor registered in Redis from a peer" }}
{{- end }}
{{- end }}
{{- if and (eq (toString $cfg.AURORA_ENV) "production") (not (include "aurora-server.isSet" $cfg.INTERNAL_API_SECRET)) }}
{{- fail "config.INTERNAL_API_SECRET is required with AURORA_ENV production: {secretKeyRef: {name: <Secret>, key: <key>}} of a rotated secret (at least 32 characters)" }}
{{- end }}
{{- $sb := .Values.secretsBackend }}
{{- if eq $sb.type "local" }}
{{- if and (not (include "aurora-server.isSet" $sb.local.masterKey)) (or (gt $max 1) (not (include "aurora-server.sqlite" .)) (not .Values.persistence.enabled)) }}
{{- fail "secretsBackend.local.masterKey is required (secretKeyRef): without it each pod makes its own master key in a volume that does not outlive it, and the credentials stored under it are lost. Only a single SQLite replica with persistence.enabled may keep the key file" }}
{{- end }}
{{- /* The store itself (secrets.db) is in the data volume too, whatever the
       state database: on PostgreSQL an emptyDir lost every credential at each
       restart, and replicas each had a store of their own. */}}
{{- if and (not (include "aurora-server.sqlite" .)) (or (gt $max 1) (not .Values.persistence.enabled)) }}
{{- fail (printf "secretsBackend.type local keeps the stored connector credentials in the pod's data volume (secrets.db), not in config.DATABASE_URL's database: it needs one replica with persistence.enabled (a PersistentVolumeClaim); for %d replica(s)%s use secretsBackend.type vault or aws_secrets_manager" $max (ternary "" " without persistence" .Values.persistence.enabled)) }}
{{- end }}
{{- else if eq $sb.type "vault" }}
{{- if not $sb.vault.addr }}{{ fail "secretsBackend.vault.addr is required with secretsBackend.type vault" }}{{ end }}
{{- if and (eq $sb.vault.authMethod "kubernetes") (not $sb.vault.role) }}
{{- fail "secretsBackend.vault.role is required with authMethod kubernetes (the Vault role bound to the chart's ServiceAccount)" }}
{{- end }}
{{- if and (eq $sb.vault.authMethod "token") (not (include "aurora-server.isSecretRef" $sb.vault.token)) }}
{{- fail "secretsBackend.vault.token is required with authMethod token: {secretKeyRef: {name, key}}" }}
{{- end }}
{{- if and $sb.vault.caBundle.configMap $sb.vault.caBundle.secret }}
{{- fail "set only one of secretsBackend.vault.caBundle.configMap and .secret" }}
{{- end }}
{{- else if eq $sb.type "aws_secrets_manager" }}
{{- if not $sb.aws.region }}{{ fail "secretsBackend.aws.region is required with secretsBackend.type aws_secrets_manager (AWS_SM_REGION)" }}{{ end }}
{{- $id := include "aurora-server.isSecretRef" $cfg.AWS_ACCESS_KEY_ID }}
{{- $key := include "aurora-server.isSecretRef" $cfg.AWS_SECRET_ACCESS_KEY }}
{{- if and (or $id $key) (not (and $id $key)) }}
{{- fail "aws_secrets_manager: set both config.AWS_ACCESS_KEY_ID and config.AWS_SECRET_ACCESS_KEY (secretKeyRef), or neither to use IRSA" }}
{{- end }}
{{- if not (or $id (include "aurora-server.awsRoleArn" .)) }}
{{- fail "aws_secrets_manager needs credentials: IRSA (secretsBackend.aws.roleArn, or serviceAccount.annotations eks.amazonaws.com/role-arn: the server assumes the role with the pod's web identity token), or static keys config.AWS_ACCESS_KEY_ID and config.AWS_SECRET_ACCESS_KEY (secretKeyRef)" }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts.api) }}
{{- fail "ingress.hosts.api is required with ingress.enabled (the backend host, e.g. api.aurora.example.com)" }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- if and (include "aurora-server.pdbEnabled" $) (not (kindIs "invalid" .minAvailable)) (not (kindIs "invalid" .maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (the other to null)" }}
{{- end }}
{{- end }}
{{- with include "aurora-server.internalPort" . }}
{{- if or (eq (int64 .) (int64 $.Values.port)) (eq (int64 .) (int64 $.Values.opsPort)) }}
{{- fail "internalPort must differ from port and opsPort (0: forwarded commands on port)" }}
{{- end }}
{{- end }}
{{- $preStop := int64 .Values.lifecycle.preStopSleepSeconds }}
{{- $drain := int64 .Values.lifecycle.shutdownDrainSeconds }}
{{- if lt (int64 .Values.terminationGracePeriodSeconds) (add $preStop $drain 15) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least lifecycle.preStopSleepSeconds (%d) + lifecycle.shutdownDrainSeconds (%d) + 15: the server's shutdown after the sleep (the running commands' drain, then closing agent sessions, the workers' queued jobs, an outbound call up to 10 s) would be cut by SIGKILL" (int64 .Values.terminationGracePeriodSeconds) $preStop $drain) }}
{{- end }}
{{- if and (ne (int64 .Values.opsPort) 0) (eq (int64 .Values.opsPort) (int64 .Values.port)) }}
{{- fail "opsPort must differ from port (0 keeps /health, /ready, /metrics on port)" }}
{{- end }}
{{- if and (eq (toString $cfg.AURORA_ENV) "production") (not .Values.tls.enabled) (not .Values.ingress.enabled) }}
{{- fail "tls.enabled false serves plain HTTP: with AURORA_ENV production, terminate TLS in front of it (ingress.enabled) or keep tls.enabled" }}
{{- end }}
{{- end }}

{{/* The plain (non-secret, non-empty) config entries, plus the derived AURORA_PUBLIC_URL. */}}
{{- define "aurora-server.configData" -}}
{{- $out := dict }}
{{- range $name, $v := .Values.config }}
{{- if and (not (kindIs "map" $v)) (include "aurora-server.isSet" $v) }}
{{- $_ := set $out $name (include "aurora-server.scalar" $v) }}
{{- end }}
{{- end }}
{{- if and (not (hasKey $out "AURORA_PUBLIC_URL")) .Values.ingress.enabled .Values.ingress.hosts.api }}
{{- $_ := set $out "AURORA_PUBLIC_URL" (printf "https://%s" .Values.ingress.hosts.api) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Scheme of the pod's HTTP endpoints on the ops or main port. */}}
{{- define "aurora-server.probeScheme" -}}
{{- if and .Values.tls.enabled (eq (int64 .Values.opsPort) 0) }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{- define "aurora-server.apiPortName" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{- define "aurora-server.probePort" -}}
{{- if ne (int64 .Values.opsPort) 0 }}ops{{ else }}{{ include "aurora-server.apiPortName" . }}{{ end }}
{{- end }}

{{/* Probe timings (initialDelaySeconds ... successThreshold) of a probe value block. */}}
{{- define "aurora-server.probeTimings" -}}
initialDelaySeconds: {{ int64 .initialDelaySeconds }}
periodSeconds: {{ int64 .periodSeconds }}
timeoutSeconds: {{ int64 .timeoutSeconds }}
failureThreshold: {{ int64 .failureThreshold }}
{{- if and (hasKey . "successThreshold") (ne (int64 .successThreshold) 1) }}
successThreshold: {{ int64 .successThreshold }}
{{- end }}
{{- end }}

{{- define "aurora-server.intOrString" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ int64 . }}{{ end }}
{{- end }}
