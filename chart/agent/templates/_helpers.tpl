{{/*
Named templates of the aurora-kubectl-agent chart.
*/}}

{{/* Chart name, or nameOverride. Also the value of the `app` label. */}}
{{- define "aurora-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects: fullnameOverride, else the release name when it already contains
the chart name (helm install aurora-kubectl-agent ... gives "aurora-kubectl-agent"), else
<release>-<name>. Truncated to 63 characters (DNS label).
*/}}
{{- define "aurora-agent.fullname" -}}
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

{{- define "aurora-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the pod selector (immutable once installed). */}}
{{- define "aurora-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aurora-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object. `app` is what the connector guide selects on:
  kubectl get pods -n aurora -l app=aurora-kubectl-agent
*/}}
{{- define "aurora-agent.labels" -}}
{{- include "aurora-agent.labelsWith" (dict "ctx" . "extra" dict) }}
{{- end }}

{{/*
The labels of every object plus "extra" (an object's own labels: a Deployment's labels, the
pods' podLabels), as one map: the chart's labels, then commonLabels, then extra, each
overriding the one before, then the selector labels (which validate keeps out of the others).
Printing the maps one after the other instead rendered a key given twice as a duplicate YAML
key, which the API server refuses.
*/}}
{{- define "aurora-agent.labelsWith" -}}
{{- $c := .ctx }}
{{- $l := dict "helm.sh/chart" (include "aurora-agent.chart" $c) "app" (include "aurora-agent.name" $c) "app.kubernetes.io/version" ($c.Values.agent.image.tag | default $c.Chart.AppVersion | replace "+" "_" | trunc 63 | trimSuffix "-" | toString) "app.kubernetes.io/component" "agent" "app.kubernetes.io/part-of" "aurora" "app.kubernetes.io/managed-by" $c.Release.Service }}
{{- $l = mustMergeOverwrite $l (deepCopy ($c.Values.commonLabels | default dict)) (deepCopy (.extra | default dict)) (include "aurora-agent.selectorLabels" $c | fromYaml) }}
{{- toYaml $l }}
{{- end }}

{{/* The pod selector's keys are the chart's: a user label with one of them would leave the pods
unselected by the Deployment (whose selector is immutable), the Service and the policies. */}}
{{- define "aurora-agent.validateLabels" -}}
{{- range $key, $m := dict "commonLabels" .Values.commonLabels "agent.labels" .Values.agent.labels "agent.podLabels" .Values.agent.podLabels }}
{{- range $sel := list "app.kubernetes.io/name" "app.kubernetes.io/instance" }}
{{- if hasKey ($m | default dict) $sel }}
{{- fail (printf "%s: %s is a key of the pods' selector, set by the chart; remove it (the Deployment's selector cannot change and must match its pods)" $key $sel) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aurora-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aurora-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the token: existingSecret, or the one this chart creates. */}}
{{- define "aurora-agent.secretName" -}}
{{- if .Values.aurora.existingSecret }}
{{- .Values.aurora.existingSecret }}
{{- else }}
{{- printf "%s-token" (include "aurora-agent.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "aurora-agent.secretKey" -}}
{{- if .Values.aurora.existingSecret }}
{{- .Values.aurora.existingSecretKey | default "token" }}
{{- else }}
{{- "token" }}
{{- end }}
{{- end }}

{{- define "aurora-agent.caConfigMapName" -}}
{{- printf "%s-ca" (include "aurora-agent.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "true" when a CA bundle is mounted (from any of the three sources). */}}
{{- define "aurora-agent.hasCa" -}}
{{- if or .Values.aurora.caBundle .Values.aurora.existingCaConfigMap .Values.aurora.existingCaSecret }}true{{ end }}
{{- end }}

{{- define "aurora-agent.image" -}}
{{- $img := .Values.agent.image }}
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

{{/* Joins a list of policy entries with commas (entries may not contain commas). */}}
{{- define "aurora-agent.joinList" -}}
{{- $out := list }}
{{- range . }}
{{- if contains "," (toString .) }}
{{- fail (printf "policy entry %q contains a comma; the agent receives the list comma-joined" (toString .)) }}
{{- end }}
{{- $out = append $out (toString .) }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/*
Environment variable names the chart sets itself; agent.env / agent.extraEnv may not set
them (a duplicate would silently override or be overridden).
*/}}
{{- define "aurora-agent.reservedEnv" -}}
NEXT_PUBLIC_WEBSOCKET_URL AURORA_AGENT_TOKEN AGENT_VERSION AURORA_CA_FILE AURORA_TLS_INSECURE_SKIP_VERIFY AURORA_ALLOW_INSECURE_WS AURORA_HEALTH_PORT AURORA_METRICS_PORT AURORA_RECONNECT_INTERVAL AURORA_RECONNECT_MAX AURORA_HEARTBEAT_INTERVAL AURORA_COMMAND_TIMEOUT_MAX AURORA_LOG_LEVEL AURORA_LOG_FORMAT AURORA_POLICY_MODE AURORA_POLICY_ALLOW AURORA_POLICY_DENY AURORA_MAX_CONCURRENT AURORA_MAX_OUTPUT AURORA_SHUTDOWN_GRACE AURORA_CLOUD_EXEC AURORA_CLOUD_PROGRAMS AURORA_SANDBOX_DIR AURORA_SANDBOX_PATH AURORA_SANDBOX_UID_RANGE AURORA_SANDBOX_ENV_PASSTHROUGH AURORA_SANDBOX_CPU_SECONDS AURORA_SANDBOX_MEMORY_MB AURORA_SANDBOX_NOFILE AURORA_SANDBOX_NPROC AURORA_SANDBOX_FSIZE_MB AURORA_CLOUD_ENV AURORA_SANDBOX_LANDLOCK AURORA_SANDBOX_READONLY_PATHS AURORA_SANDBOX_DENY_PATHS AURORA_SANDBOX_ALLOWED_PORTS HOME TMPDIR
{{- end }}

{{/*
Checks the values that templates cannot express in values.schema.json; fails the render
with a message naming the value to set.
*/}}
{{- define "aurora-agent.validate" -}}
{{- include "aurora-agent.validateLabels" . }}
{{- $a := .Values.aurora }}
{{- $ws := required "aurora.wsEndpoint is required: the Aurora tunnel endpoint, e.g. --set aurora.wsEndpoint=wss://your-aurora-instance.com/kubectl-agent" $a.wsEndpoint }}
{{- if not (regexMatch "^wss?://[^/?#\\s]+" $ws) }}
{{- fail (printf "aurora.wsEndpoint must be a wss:// URL such as wss://your-aurora-instance.com/kubectl-agent (got %q)" $ws) }}
{{- end }}
{{- if and (hasPrefix "ws://" $ws) (not $a.allowInsecureWs) }}
{{- fail "aurora.wsEndpoint is a plain ws:// URL: use wss://, or set aurora.allowInsecureWs=true (development only)" }}
{{- end }}
{{- if and $a.agentToken $a.existingSecret }}
{{- fail "set only one of aurora.agentToken and aurora.existingSecret" }}
{{- end }}
{{- if not $a.existingSecret }}
{{- $_ := required "aurora.agentToken is required (the token from Aurora > Connectors > Kubernetes > Add Cluster), or set aurora.existingSecret to a Secret that holds it" $a.agentToken }}
{{- end }}
{{- $caSources := 0 }}
{{- range (list $a.caBundle $a.existingCaConfigMap $a.existingCaSecret) }}
{{- if . }}{{ $caSources = add1 $caSources }}{{ end }}
{{- end }}
{{- if gt $caSources 1 }}
{{- fail "set only one of aurora.caBundle, aurora.existingCaConfigMap and aurora.existingCaSecret" }}
{{- end }}
{{- if and (eq .Values.policy.mode "custom") (empty .Values.policy.allow) }}
{{- fail "policy.mode custom runs only what policy.allow lists: policy.allow must not be empty" }}
{{- end }}
{{- if and (ne .Values.policy.mode "custom") (not (empty .Values.policy.allow)) }}
{{- fail (printf "policy.allow is only used with policy.mode custom (mode is %s): remove it, or use custom with \"@readonly\" plus the extra entries" .Values.policy.mode) }}
{{- end }}
{{- $reserved := splitList " " (include "aurora-agent.reservedEnv" .) }}
{{- range $name, $_ := .Values.agent.env }}
{{- if has $name $reserved }}
{{- fail (printf "agent.env.%s is set by the chart (from aurora.*, network.*, monitoring.*, policy.*, cloudExec.*, sandbox.* or agent.* values; the token only through its Secret): set that value instead" $name) }}
{{- end }}
{{- end }}
{{- range .Values.agent.extraEnv }}
{{- if has .name $reserved }}
{{- fail (printf "agent.extraEnv %s is set by the chart (from aurora.*, network.*, monitoring.*, policy.*, cloudExec.*, sandbox.* or agent.* values; the token only through its Secret): set that value instead" .name) }}
{{- end }}
{{- end }}
{{- if and .Values.rbac.create (eq (include "aurora-agent.serviceAccountName" .) "default") }}
{{- fail (printf "rbac.create binds the agent's ClusterRole to its ServiceAccount: with serviceAccount.create false, name an existing account in serviceAccount.name (not \"default\", which every pod of namespace %s runs as unless it names another: they would all read the cluster), or keep serviceAccount.create" .Release.Namespace) }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (set the other to null)" }}
{{- end }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" }}
{{- end }}
{{- if .Values.sandbox.uidSeparation }}
{{- $r := .Values.sandbox.uidRange | toString }}
{{- if not (regexMatch "^[0-9]+-[0-9]+$" $r) }}
{{- fail (printf "sandbox.uidRange must be lo-hi (got %q)" $r) }}
{{- end }}
{{- $lo := int64 (index (splitList "-" $r) 0) }}
{{- $hi := int64 (index (splitList "-" $r) 1) }}
{{- if or (lt $lo 1000) (lt $hi $lo) (gt (sub $hi $lo) 1000000) (gt $hi 4294967294) }}
{{- fail (printf "sandbox.uidRange %s: lo must be at least 1000, hi at least lo, at most 1000001 uids" $r) }}
{{- end }}
{{- if lt (add1 (sub $hi $lo)) (int64 .Values.agent.maxConcurrent) }}
{{- fail (printf "sandbox.uidRange %s has %d uids, fewer than agent.maxConcurrent (%d): every concurrent cloud command needs a uid of its own" $r (add1 (sub $hi $lo)) (int64 .Values.agent.maxConcurrent)) }}
{{- end }}
{{- end }}
{{- /* After SIGTERM the agent lets running commands finish for shutdownGracePeriod, then
       cancels what is left and takes up to 10 s more (agent/tunnel.c SHUTDOWN_SLACK_MS) to
       send their results and close the tunnel: a SIGKILL before that loses those results. */}}
{{- $grace := int64 .Values.agent.shutdownGracePeriod }}
{{- if lt (int64 .Values.agent.terminationGracePeriodSeconds) (add $grace 10) }}
{{- fail (printf "agent.terminationGracePeriodSeconds (%d) must be at least agent.shutdownGracePeriod (%d) + 10: after the grace the agent cancels the commands still running and needs up to 10 s to send their results and close the tunnel before the kubelet's SIGKILL" (int64 .Values.agent.terminationGracePeriodSeconds) $grace) }}
{{- end }}
{{- if and (eq .Values.agent.serviceAccountToken.mode "projected") (lt (int .Values.agent.serviceAccountToken.expirationSeconds) 600) }}
{{- fail "agent.serviceAccountToken.expirationSeconds must be at least 600 (Kubernetes minimum)" }}
{{- end }}
{{- if and (eq .Values.agent.serviceAccountToken.mode "projected") (semverCompare "<1.20-0" .Capabilities.KubeVersion.GitVersion) }}
{{- fail (printf "agent.serviceAccountToken.mode projected reads the cluster CA from the kube-root-ca.crt ConfigMap, which Kubernetes publishes from 1.20 on (this cluster: %s), so the pod would never start: set agent.serviceAccountToken.mode automount (not with cloudExec.enabled), or upgrade the cluster" .Capabilities.KubeVersion.GitVersion) }}
{{- end }}
{{- if and (eq .Values.agent.serviceAccountToken.mode "automount") .Values.cloudExec.enabled }}
{{- fail "agent.serviceAccountToken.mode automount mounts the kubelet's token world-readable (0644): with cloudExec.enabled a cloud command could read it. Use mode projected (0440, the agent's group only)" }}
{{- end }}
{{- if and (eq .Values.agent.serviceAccountToken.mode "projected") (not .Values.sandbox.uidSeparation) (kindIs "invalid" (.Values.agent.podSecurityContext | default dict).fsGroup) }}
{{- fail "agent.serviceAccountToken.mode projected mounts the token 0440 for root and the pod's fsGroup: set agent.podSecurityContext.fsGroup to the agent's group (1000), or kubectl cannot read it" }}
{{- end }}
{{- end }}

{{/* initialDelaySeconds, periodSeconds, ... of a probe value block (without "enabled"). */}}
{{- define "aurora-agent.probeTimings" -}}
{{- $out := dict }}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $ $k }}
{{- $_ := set $out $k (int64 (get $ $k)) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the proxy block, in upper and lower case (curl and
Go programs differ in which they read). NO_PROXY gets the in-cluster API server address
($(KUBERNETES_SERVICE_HOST), expanded by the kubelet) and cluster-local names appended so
kubectl does not send API calls through the proxy.
*/}}
{{- define "aurora-agent.proxyEnv" -}}
{{- $p := .Values.proxy }}
{{- if or $p.httpsProxy $p.httpProxy $p.noProxy }}
{{- $no := list }}
{{- with $p.noProxy }}{{ $no = append $no . }}{{ end }}
{{- if and $p.noProxyDefaults (or $p.httpsProxy $p.httpProxy) }}
{{- $no = append $no "$(KUBERNETES_SERVICE_HOST),kubernetes.default.svc,.svc,.cluster.local,localhost,127.0.0.1" }}
{{- end }}
{{- range $name := list "HTTPS_PROXY" "https_proxy" }}
{{- with $p.httpsProxy }}
- name: {{ $name }}
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $name := list "HTTP_PROXY" "http_proxy" }}
{{- with $p.httpProxy }}
- name: {{ $name }}
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $no }}
{{- range $name := list "NO_PROXY" "no_proxy" }}
- name: {{ $name }}
  value: {{ join "," $no | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
AURORA_CLOUD_ENV from sandbox.cliEnv: "cli:NAME=value" entries, comma-joined, in a stable
order (CLIs, then names, sorted).
*/}}
{{- define "aurora-agent.cliEnv" -}}
{{- $out := list }}
{{- range $cli := keys .Values.sandbox.cliEnv | sortAlpha }}
{{- $vars := get $.Values.sandbox.cliEnv $cli }}
{{- range $name := keys $vars | sortAlpha }}
{{- $out = append $out (printf "%s:%s=%s" $cli $name (get $vars $name | toString)) }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/* A list of integers, comma-joined ("443,8443"). */}}
{{- define "aurora-agent.portList" -}}
{{- $out := list }}
{{- range . }}{{ $out = append $out (int64 . | toString) }}{{ end }}
{{- join "," $out }}
{{- end }}

{{/* A number (printed as an integer) or a quoted string such as "50%". */}}
{{- define "aurora-agent.intOrString" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ int64 . }}{{ end }}
{{- end }}

{{/*
The capabilities the agent needs for a uid per cloud command (agent/sandbox.h): switch to
the command's uid/gid, hand it its directory, kill what the uid left, remove its files.
Nothing else; the commands themselves run with none (own uid, no_new_privs).
*/}}
{{- define "aurora-agent.uidSeparationCaps" -}}
SETUID SETGID CHOWN KILL DAC_OVERRIDE FOWNER
{{- end }}

{{/*
Pod securityContext: agent.podSecurityContext; with sandbox.uidSeparation the agent runs
as root (runAsUser 0, runAsNonRoot false), everything else as given.
*/}}
{{- define "aurora-agent.podSecurityContext" -}}
{{- $sc := deepCopy (.Values.agent.podSecurityContext | default dict) }}
{{- if .Values.sandbox.uidSeparation }}
{{- $_ := set $sc "runAsUser" 0 }}
{{- $_ := set $sc "runAsNonRoot" false }}
{{- end }}
{{- if $sc }}{{ toYaml $sc }}{{ end }}
{{- end }}

{{/*
Container securityContext: agent.securityContext; with sandbox.uidSeparation runAsUser 0,
runAsNonRoot false and capabilities drop ALL + add exactly uidSeparationCaps (the
restricted profile's other settings, read-only root filesystem, no privilege escalation,
seccomp, stay as given). Needs the baseline Pod Security Standard.
*/}}
{{- define "aurora-agent.securityContext" -}}
{{- $sc := deepCopy (.Values.agent.securityContext | default dict) }}
{{- if .Values.sandbox.uidSeparation }}
{{- $_ := set $sc "runAsUser" 0 }}
{{- $_ := set $sc "runAsNonRoot" false }}
{{- $_ := set $sc "capabilities" (dict "drop" (list "ALL") "add" (splitList " " (include "aurora-agent.uidSeparationCaps" .))) }}
{{- end }}
{{- if $sc }}{{ toYaml $sc }}{{ end }}
{{- end }}

{{/*
The agent container's memory limit in MiB (rounded down): Kubernetes quantities with a
binary (Ki Mi Gi Ti) or decimal (k M G T) suffix, or plain bytes. 0 when there is no
limit or it is written some other way (the NOTES then stay silent rather than guess).
*/}}
{{- define "aurora-agent.memoryLimitMiB" -}}
{{- $limits := (.Values.agent.resources | default dict).limits | default dict }}
{{- $q := toString (index $limits "memory" | default "") }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" $q }}
{{- $perUnit := dict "" 0.00000095367431640625 "Ki" 0.0009765625 "Mi" 1.0 "Gi" 1024.0 "Ti" 1048576.0 "k" 0.00095367431640625 "M" 0.95367431640625 "G" 953.67431640625 "T" 976562.5 }}
{{- $unit := trimPrefix $num $q }}
{{- if and $num (hasKey $perUnit $unit) }}{{ floor (mulf (float64 $num) (get $perUnit $unit)) | int64 }}{{ else }}0{{ end }}
{{- end }}
